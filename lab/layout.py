"""Where a running lab keeps its state: one directory (`.lab/` by default, gitignored).

.lab/kubeconfig                    admin kubeconfig of the lab's kube-apiserver
.lab/supervisor.pid                the supervisor process (owner of everything below)
.lab/state.json                    what `up` started (written once the lab is ready)
.lab/logs/supervisor.log           what the supervisor and its simulators did
.lab/kube-apiserver.log            the control plane's log; .lab/etcd/ (data, etcd.log), .lab/pki/
.lab/nodes/<node>/                 a simulated node's root filesystem: dev/kmsg (the kernel-log
                                   sink), var/lib/faultflow (the toggle hostPath),
                                   proc/driver/nvidia/gpus/<pci>/information
.lab/pods/<namespace>_<pod>/       a pod's emptyDir volumes
.lab/pod-logs/<namespace>_<pod>.log  stdout+stderr of every container of the pod
.lab/images/shim/                  the shim image's /opt/faultflow (install.sh and the .so)
.lab/prometheus/                   the lab Prometheus: prometheus.yml, tsdb/, prometheus.log, prometheus.pid
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = ".lab"
DIR_ENV = "FAULTFLOW_LAB_DIR"


@dataclass(frozen=True)
class LabDir:
    root: Path

    @classmethod
    def resolve(cls, path: str | None = None) -> LabDir:
        return cls(Path(path or os.environ.get(DIR_ENV) or DEFAULT_DIR).absolute())

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def images(self) -> Path:
        return self.root / "images"

    def node_root(self, node: str) -> Path:
        return self.root / "nodes" / node

    def pod_dir(self, namespace: str, name: str) -> Path:
        return self.root / "pods" / f"{namespace}_{name}"

    def pod_log(self, namespace: str, name: str) -> Path:
        return self.root / "pod-logs" / f"{namespace}_{name}.log"
