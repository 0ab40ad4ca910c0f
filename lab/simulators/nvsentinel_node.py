"""The NVSENTINEL SIMULATOR in one node's pod (the DaemonSet `lab.simulators.nvsentinel` makes): it
reads its own node's kernel log and does, for that node, what NVSentinel's syslog-health-monitor,
platform-connectors, fault-quarantine and node-drainer do (`lab.nvsentinel_simulator`), through the
API with its ServiceAccount. The circuit breaker counts every GPU node of the cluster.

    NODE_NAME=gpu-0 python -m lab.simulators.nvsentinel_node --config '{"eviction_grace_s": 2}'

The node's files come in as hostPaths under /host: /var/log/kmsg.log (what the node's /dev/kmsg
received, `lab.nodes.node.KERNEL_LOG`) and /var/lib/nvsentinel/gpu_metadata.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

HOST = Path("/host")
KERNEL_LOG = "var/log/kmsg.log"
GPU_METADATA = "var/lib/nvsentinel/gpu_metadata.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="NVSentinel SIMULATOR for one node (a DaemonSet pod)")
    parser.add_argument("--config", default="{}", help="JSON of NvsentinelConfig fields")
    parser.add_argument("--host-root", default=str(HOST), help="where the node's files are mounted")
    parser.add_argument("--ready-file", default="", help="written once the kernel log is being read (its readinessProbe)")
    args = parser.parse_args(argv)
    node = os.environ.get("NODE_NAME", "")
    if not node:
        print("nvsentinel-node: NODE_NAME is not set (the DaemonSet passes spec.nodeName)", file=sys.stderr)
        return 2
    from lab.layout import LabDir
    from lab.nvsentinel_simulator import NvsentinelConfig, NvsentinelSimulator
    from steps.kube.client import connect

    try:
        config = NvsentinelConfig(**json.loads(args.config))
    except (TypeError, ValueError) as error:
        print(f"nvsentinel-node: bad --config: {error}", file=sys.stderr)
        return 2
    root = Path(args.host_root)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    simulator = NvsentinelSimulator(
        connect(),
        LabDir(root),
        [node],
        config,
        node_paths=lambda _node: (root / KERNEL_LOG, root / GPU_METADATA),
        breaker_counts_cluster=True,
    ).start()  # reads from the log's end on, as a journal reader starts at "now"
    if args.ready_file:
        Path(args.ready_file).write_text(f"reading {root / KERNEL_LOG}\n")
    print(f"nvsentinel-simulator: monitoring {node}", flush=True)
    while not stopped.wait(3600):
        pass
    simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
