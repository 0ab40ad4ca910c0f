"""The lab's host process for the simulators that run beside the real cluster rather than in it: the
DGD operator SIMULATOR and the NVSENTINEL SIMULATOR, with the lab's admin kubeconfig.

    python -m lab.simulators.host SPEC.json

SPEC.json (`HostSpec`, written by `lab.simulators.world`): the kubeconfig, the DGD version, each GPU
node's kernel log and gpu_metadata.json as the host reaches them, NVSentinel's configuration and the
file to write once both run. SIGTERM/SIGINT stop both; the process is recorded in the lab's ledger
(`lab.nodes.ledger`) before it does anything, so `down` reaches it after any crash.

Why here and not as a Deployment (where Dynamo's operator runs): the simulators are the lab's
`lab` package over `steps`' Kubernetes client; an in-cluster copy needs an image carrying both and a
ServiceAccount with the operator's rights, and NVSentinel's readers need the host-side copy of each
node's kernel log (`lab.simulators.nvsentinel`). One process keeps `lab up` light until then.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class HostSpec:
    folder: str  # the cluster's folder
    kubeconfig: str
    dgd_version: str
    ready: str  # written once the simulators run
    node_logs: dict[str, tuple[str, str]] = field(default_factory=dict)  # GPU node -> (kmsg log, gpu_metadata.json)
    nvsentinel: dict = field(default_factory=dict)  # NvsentinelConfig fields

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, path: Path) -> HostSpec:
        return cls(**json.loads(path.read_text()))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lab.simulators.host SPEC.json", file=sys.stderr)
        return 2
    spec = HostSpec.read(Path(args[0]))
    from lab.layout import LabDir
    from lab.nvsentinel_simulator import NvsentinelConfig, NvsentinelSimulator
    from lab.simulators.dgd_operator import DgdOperator
    from steps.kube.client import connect

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    paths = {node: (Path(log), Path(metadata)) for node, (log, metadata) in spec.node_logs.items()}
    nvsentinel = NvsentinelSimulator(
        connect(spec.kubeconfig),
        LabDir(Path(spec.folder)),
        sorted(paths),
        NvsentinelConfig(**spec.nvsentinel),
        node_paths=paths.__getitem__,
    ).start()  # each reader starts at its log's end, as a journal reader starts at "now"
    operator = DgdOperator(connect(spec.kubeconfig), spec.dgd_version).start()
    Path(spec.ready).write_text(json.dumps({"pid": os.getpid()}))
    print(f"simulators: dgd-operator ({spec.dgd_version}), nvsentinel on {', '.join(sorted(paths))}", flush=True)
    while not stopped.wait(3600):
        pass
    operator.stop()
    nvsentinel.stop()
    print("simulators stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
