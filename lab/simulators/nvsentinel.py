"""NVSentinel on the real lab cluster: the NVSENTINEL SIMULATOR as a DaemonSet, one pod per GPU node,
where NVSentinel's syslog-health-monitor runs.

Each pod (`lab.simulators.nvsentinel_node`, image faultflow-lab-nvsentinel) reads its node's kernel log
through a hostPath — `/var/log/kmsg.log`, what the node's /dev/kmsg pty received (`lab.nodes.node`),
as the real monitor reads the node's journal through a hostPath — and does NVSentinel's work for its
node through the API (`lab.nvsentinel_simulator`): condition, quarantine markings, cordon, drain
through the Eviction API, the cluster-wide circuit breaker. Upstream, platform-connectors,
fault-quarantine and node-drainer are separate Deployments fed through a datastore; here each node's
pod does their part for its node (the breaker reads every GPU node from the API, so it stays
cluster-wide).

The pods carry the chart's label (`app.kubernetes.io/name=syslog-health-monitor`, what preflight
checks), tolerate every taint (a quarantined node keeps its monitor) and, as DaemonSet pods in a
system namespace, are never drained.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from lab.layout import LabDir
from lab.nvsentinel_simulator import AGENT, NvsentinelConfig, NvsentinelSimulator
from lab.simulators.nvsentinel_node import GPU_METADATA, HOST, KERNEL_LOG
from steps.gpu import nvsentinel as nv
from steps.kube.client import Conflict, Kube, Ref

MONITOR = f"{AGENT}-regular"  # the chart's DaemonSet name
READY_FILE = "/tmp/ready"


def cluster_role() -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": MONITOR},
        "rules": [
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch", "patch", "update"]},
            {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["get", "patch", "update"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch", "update"]},
        ],
    }


def daemonset(namespace: str, image: str, config: NvsentinelConfig) -> dict:
    labels = {"app.kubernetes.io/name": AGENT}
    host = str(HOST)
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": MONITOR, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": MONITOR,
                    "nodeSelector": {nv.DRIVER_INSTALLED_LABEL: "true"},
                    "terminationGracePeriodSeconds": 2,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": AGENT,
                            "image": image,
                            "imagePullPolicy": "Never",
                            "args": ["--config", json.dumps(asdict(config)), "--ready-file", READY_FILE],
                            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            # Ready once it reads the log (from its end): only later records are processed.
                            "readinessProbe": {"exec": {"command": ["cat", READY_FILE]}, "periodSeconds": 1},
                            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
                            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                            "volumeMounts": [
                                {"name": "kernel-log", "mountPath": f"{host}/{KERNEL_LOG}", "readOnly": True},
                                {"name": "nvsentinel", "mountPath": f"{host}/{Path(GPU_METADATA).parent}", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "kernel-log", "hostPath": {"path": f"/{KERNEL_LOG}", "type": "File"}},
                        {"name": "nvsentinel", "hostPath": {"path": f"/{Path(GPU_METADATA).parent}", "type": "DirectoryOrCreate"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def objects(namespace: str, image: str, config: NvsentinelConfig) -> list[tuple[Ref, dict]]:
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": MONITOR},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MONITOR},
        "subjects": [{"kind": "ServiceAccount", "name": MONITOR, "namespace": namespace}],
    }
    return [
        (Ref("v1", "serviceaccounts", namespace, ""), {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": MONITOR}}),
        (Ref("rbac.authorization.k8s.io/v1", "clusterroles", None, ""), cluster_role()),
        (Ref("rbac.authorization.k8s.io/v1", "clusterrolebindings", None, ""), binding),
        (Ref("apps/v1", "daemonsets", namespace, ""), daemonset(namespace, image, config)),
    ]


def install(kube: Kube, folder: Path, config: NvsentinelConfig, gpu_nodes: list[str], image: str) -> None:
    """Its ConfigMaps (circuit breaker, fault-quarantine's config.toml) and the DaemonSet with its
    rights, in its namespace (already made, with its default ServiceAccount: `lab.simulators.world`).
    Objects already there are left as they are. Does not wait."""
    NvsentinelSimulator(kube, LabDir(folder), gpu_nodes, config).install(monitor_pods=False)
    for ref, body in objects(config.namespace, image, config):
        try:
            kube.create(ref, body)
        except Conflict:
            pass
