"""The simulated world around the real API server for the GPU-step tests. Each simulator is named
for what it stands in for and copies that component's contract exactly (nothing else):

* `simulate_nvsentinel_quarantine` — NVSentinel fault-quarantine's node markings (nvsentinel.md §3.2);
* `simulate_dgd_operator_rollout` — the Dynamo operator reporting a finished rollout in DGD status;
* `KubeletSimulator` — runs our toggle-off pods' command on this machine (the hostPath is a local
  directory, one per node when `roots` maps node → directory, as each real node has its own disk)
  and reports the pod Succeeded, as a kubelet would.

`install_faultflow` stands for `kubectl apply -k deploy` as far as the steps read it: faultflow's
namespace (`HOME`, where the ledgers and toggle-off pods live) and ConfigMap faultflow-config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from steps.gpu import nvsentinel
from steps.kube.client import Kube, Ref
from steps.run import install

FAULTFLOW = [sys.executable, "-c", "from steps.cli import run; run()"]
HOME = install.DEFAULT_NAMESPACE
# The images and toggle directory the test installation is configured with.
STEPS_IMAGE, SHIM_IMAGE, TOGGLE_DIR = "steps:1", "shim:1", "/var/lib/faultflow"
NODE_AGENT_IMAGE = "node-agent:1"


def install_faultflow(kube: Kube, home: str = HOME) -> None:
    """faultflow's namespace and ConfigMap faultflow-config (idempotent: once per cluster)."""
    if kube.get_or_none(Ref("v1", "namespaces", None, home)) is None:
        make_namespace(kube, home, opted_in=False)
    if kube.get_or_none(install.config_ref(home)) is None:
        kube.create(Ref("v1", "configmaps", home, ""), install.config_object(home, STEPS_IMAGE, SHIM_IMAGE, TOGGLE_DIR, NODE_AGENT_IMAGE))


def make_namespace(kube: Kube, name: str, opted_in: bool = True) -> None:
    labels = {"faultflow.dev/allow-faults": "true"} if opted_in else {}
    kube.create(Ref("v1", "namespaces", None, ""), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
    # No controller-manager here to create it, and pod admission requires it.
    kube.create(Ref("v1", "serviceaccounts", name, ""), {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})


def make_gpu_node(kube: Kube, name: str, gpus: int = 8, unschedulable: bool = False) -> dict:
    body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"nvidia.com/gpu.present": "true"}}}
    if unschedulable:
        body["spec"] = {"unschedulable": True}
    kube.create(Ref("v1", "nodes", None, ""), body)
    kube.request(
        "PATCH",
        f"/api/v1/nodes/{name}/status",
        content_type="application/merge-patch+json",
        body={
            "status": {
                "capacity": {"nvidia.com/gpu": str(gpus), "cpu": "8", "pods": "110"},
                "allocatable": {"nvidia.com/gpu": str(gpus), "cpu": "8", "pods": "110"},
            }
        },
    )
    return kube.get(Ref("v1", "nodes", None, name))


def dgd_ref(obj: dict) -> Ref:
    return Ref(obj["apiVersion"], "dynamographdeployments", obj["metadata"]["namespace"], obj["metadata"]["name"])


def simulate_nvsentinel_quarantine(kube: Kube, node: str, xid: int, pci: str = "0000:17:00") -> None:
    """fault-quarantine's markings on a fatal XID: cordon, annotations, labels (one merge patch, as FQ's
    node update is one write)."""
    event = [
        {
            "agent": "syslog-health-monitor",
            "componentClass": "GPU",
            "checkName": nvsentinel.XID_CONDITION,
            "isFatal": True,
            "errorCode": [str(xid)],
            "entitiesImpacted": [{"entityType": "PCI", "entityValue": pci}],
            "nodeName": node,
        }
    ]
    kube.merge_patch(
        Ref("v1", "nodes", None, node),
        {
            "spec": {"unschedulable": True},
            "metadata": {
                "annotations": {nvsentinel.EVENT_ANNOTATION: json.dumps(event), nvsentinel.CORDONED_ANNOTATION: "True"},
                "labels": {
                    nvsentinel.CORDON_BY_LABEL: "NVSentinel",
                    "k8saas.nvidia.com/cordon-reason": "Syslog-fatal-error-ruleset",
                    nvsentinel.STATE_LABEL: "quarantined",
                },
            },
        },
    )


def simulate_nvsentinel_uncordon(kube: Kube, node: str) -> None:
    """What FQ removes again on a healthy event (§3.5) — so node snapshots compare equal after a test."""
    kube.merge_patch(
        Ref("v1", "nodes", None, node),
        {
            "metadata": {
                "annotations": {nvsentinel.EVENT_ANNOTATION: None, nvsentinel.CORDONED_ANNOTATION: None},
                "labels": {nvsentinel.CORDON_BY_LABEL: None, "k8saas.nvidia.com/cordon-reason": None, nvsentinel.STATE_LABEL: None},
            },
        },
    )


def simulate_dgd_operator_rollout(kube: Kube, ref: Ref) -> None:
    """The operator's status after a finished rollout: observedGeneration, Ready, every component updated."""
    obj = kube.get(ref)
    spec = obj["spec"]
    if "components" in spec:
        comps = {c["name"]: c.get("replicas", 1) for c in spec["components"]}
        key = "components"
    else:
        comps = {n: s.get("replicas", 1) for n, s in spec["services"].items()}
        key = "services"
    status = {
        "observedGeneration": obj["metadata"]["generation"],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "AllReady", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ],
        key: {
            n: {
                "componentKind": "Deployment",
                "componentName": f"{obj['metadata']['name']}-{n.lower()}",
                "replicas": r,
                "updatedReplicas": r,
                "readyReplicas": r,
                "availableReplicas": r,
            }
            for n, r in comps.items()
        },
    }
    kube.request("PATCH", ref.path() + "/status", body={"status": status}, content_type="application/merge-patch+json")


class KubeletSimulator:
    """Runs toggle-off pods: executes the container's command here and sets the pod's phase."""

    def __init__(self, kube: Kube, namespace: str = HOME, roots: dict[str, Path] | None = None):
        self.kube, self.namespace, self.roots = kube, namespace, dict(roots or {})
        self.ran: list[list[str]] = []
        self.pods: list[dict] = []  # every toggle-off pod it ran, as created
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        pods = Ref("v1", "pods", self.namespace, "")
        while not self._stop.is_set():
            listing = self.kube.list(pods, label_selector="faultflow.dev/purpose=toggle-off")
            for pod in listing.get("items") or []:
                self._run(pod)
            for event in self.kube.watch(
                pods, listing["metadata"]["resourceVersion"], label_selector="faultflow.dev/purpose=toggle-off", timeout_seconds=1
            ):
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._run(event["object"])
                if self._stop.is_set():
                    return

    def _run(self, pod: dict) -> None:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
            return
        self.pods.append(pod)
        command = list(pod["spec"]["containers"][0]["command"])
        assert command[:3] == ["faultflow", "shim", "off"], command
        root = self.roots.get(pod["spec"].get("nodeName"))
        host = pod["spec"]["volumes"][0]["hostPath"]["path"]
        if root is not None:  # the node's own disk: the hostPath directory is `root` there
            where = command.index("--file") + 1
            command[where] = str(Path(root) / Path(command[where]).relative_to(host))
        elif not host.startswith(tempfile.gettempdir()):
            # A node this simulator has no disk for: never this machine's own directories.
            self._phase(pod, "Failed")
            return
        result = subprocess.run(FAULTFLOW + command[1:], capture_output=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
        self.ran.append(command)
        self._phase(pod, "Succeeded" if result.returncode == 0 else "Failed")

    def _phase(self, pod: dict, phase: str) -> None:
        try:
            self.kube.request(
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}/status",
                body={"status": {"phase": phase}},
                content_type="application/merge-patch+json",
            )
        except Exception:
            pass  # deleted meanwhile
