"""NVSentinel on the real lab cluster: its presence as the chart makes it, around the NVSENTINEL
SIMULATOR (`lab.nvsentinel_simulator`), which reads each GPU node's kernel log and cordons, marks and
drains through the API exactly as in the simulated lab.

Where each part runs, and why:
* the syslog-health-monitor DaemonSet is a real DaemonSet: the real DaemonSet controller runs its pod
  on every GPU node (`nvsentinel.dgxc.nvidia.com/driver.installed=true`), Running, tolerating the
  cordon, skipped by every drain — what preflight checks and what a drain must leave alone. Its
  container is the pause image: the monitor's work is done by the simulator in the lab's host process
  (`lab.simulators.host`), because a node's /dev/kmsg is a pty whose master the node's PID 1
  (`lab.nodes.nsinit`) holds and copies into `<node>/kmsg.log` on the host, and the simulator's
  cluster-wide half (fault-quarantine's breaker over all GPU nodes, node-drainer) shares its state
  with the per-node readers in one process. Moving the readers into these pods needs an image that
  carries the simulator and a channel to that shared half: a later step.
* fault-quarantine and node-drainer (Deployments upstream) run in the same host process, with the
  lab's admin credentials.
"""

from __future__ import annotations

from pathlib import Path

from lab.images import build as images
from lab.layout import LabDir
from lab.nvsentinel_simulator import AGENT, NvsentinelConfig, NvsentinelSimulator
from steps.gpu import nvsentinel as nv
from steps.kube.client import Conflict, Kube, Ref

MONITOR_DAEMONSET = f"{AGENT}-regular"


def monitor_daemonset(namespace: str) -> dict:
    labels = {"app.kubernetes.io/name": AGENT}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": MONITOR_DAEMONSET, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {nv.DRIVER_INSTALLED_LABEL: "true"},
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 1,
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {
                            "name": AGENT,
                            "image": images.PAUSE.ref,
                            "imagePullPolicy": "Never",
                            "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}},
                        }
                    ],
                },
            },
        },
    }


def install(kube: Kube, folder: Path, config: NvsentinelConfig, gpu_nodes: list[str]) -> None:
    """Its namespace (already made, with its ServiceAccount: `lab.simulators.world`), ConfigMaps and the
    monitor DaemonSet."""
    NvsentinelSimulator(kube, LabDir(folder), gpu_nodes, config).install(monitor_pods=False)
    try:
        kube.create(Ref("apps/v1", "daemonsets", config.namespace, ""), monitor_daemonset(config.namespace))
    except Conflict:
        pass  # there from an earlier start
