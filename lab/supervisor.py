"""The lab's supervisor: the one background process that owns the control plane, the simulators and
every pod process of a running lab. `faultflow lab up` starts it in a session of its own (so `down`
can reach every process it ever started through its process group); it writes `.lab/state.json` once
the lab serves, and on SIGTERM stops everything and exits.

    python -m lab.supervisor --dir .lab [--dgd-version v1beta1] [--gpu-nodes 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback

from lab.layout import LabDir
from lab.nvsentinel_simulator import NvsentinelConfig
from lab.world import LabOptions, World


class Stop(BaseException):
    """SIGTERM/SIGINT while starting: unwind through `finally` and stop what was started."""


def parse(argv: list[str] | None) -> tuple[LabDir, LabOptions]:
    parser = argparse.ArgumentParser(description="faultflow lab supervisor (started by `faultflow lab up`)")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--dgd-version", default="v1beta1", choices=["v1alpha1", "v1beta1"])
    parser.add_argument("--gpu-nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nvsentinel", default="{}", help="JSON of NvsentinelConfig fields (delays, breaker)")
    args = parser.parse_args(argv)
    options = LabOptions(
        dgd_version=args.dgd_version,
        gpu_nodes=args.gpu_nodes,
        workers=args.workers,
        nvsentinel=NvsentinelConfig(**json.loads(args.nvsentinel)),
    )
    return LabDir.resolve(args.dir), options


def write_state(lab: LabDir, state: dict) -> None:
    tmp = lab.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(lab.state_file)  # readers see the whole record or none


def main(argv: list[str] | None = None) -> int:
    lab, options = parse(argv)
    lab.root.mkdir(parents=True, exist_ok=True)
    lab.pid_file.write_text(str(os.getpid()))
    stopped = threading.Event()

    def on_signal(signum, _frame):
        stopped.set()
        if not started.is_set():
            raise Stop()

    started = threading.Event()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    world = World(lab, options)
    try:
        state = world.start()
        started.set()
        write_state(lab, {"pid": os.getpid(), **state})
        print(f"lab ready in {state['up_s']} s: {json.dumps(state)}", flush=True)
        while not stopped.wait(3600):
            pass
        return 0
    except Stop:
        return 0
    except Exception:
        traceback.print_exc()
        return 3
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        world.stop()
        print("lab stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
