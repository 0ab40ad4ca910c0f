"""The lab's host process for the simulator that runs beside the real cluster rather than in it: the
NVSENTINEL SIMULATOR, with the lab's admin kubeconfig (why not in pods: `lab.simulators.nvsentinel`).

    python -m lab.simulators.host SPEC.json

SPEC.json (`HostSpec`, written by `lab.simulators.world`): the kubeconfig, each GPU node's kernel log
and gpu_metadata.json as the host reaches them, NVSentinel's configuration and the file to write once
it runs. SIGTERM/SIGINT stop it; the process is recorded in the lab's ledger (`lab.nodes.ledger`)
before it does anything, so `down` reaches it after any crash.
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
    Path(spec.ready).write_text(json.dumps({"pid": os.getpid()}))
    print(f"simulators: nvsentinel on {', '.join(sorted(paths))}", flush=True)
    while not stopped.wait(3600):
        pass
    nvsentinel.stop()
    print("simulators stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
