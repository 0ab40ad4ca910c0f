"""`make demo` until the lab exists: the CUDA fault shim doing its job on this machine, no GPU needed.

A long-running CUDA process (a driver-API program that reaches libcuda the way cudart does, over the
driver simulator) is shimmed in passthrough mode. The node toggle is then switched with the real CLI,
as the inject-xid and cleanup steps will do: the running process starts failing with XID 79's error
at once, a process started during the fault finds no device, and the fault switches itself off when
its expiry passes. A program linked against the real cudart shows the runtime API's view.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.native_build import Native, build
from steps.gpu.xids import lookup

FAULTFLOW = str(Path(sys.executable).parent / "faultflow")


def say(start: float, text: str) -> None:
    print(f"[{time.monotonic() - start:6.2f}s] {text}", flush=True)


def environment(native: Native, toggle: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "FAULTFLOW_", "SIM_"))}
    env.update(LD_LIBRARY_PATH=str(native.driver_dir), LD_PRELOAD=str(native.shim), FAULTFLOW_TOGGLE_FILE=str(toggle))
    return env


class Worker:
    """The running process: reads one CUDA operation per line, answers "op=result"."""

    def __init__(self, native: Native, env: dict[str, str]):
        self.process = subprocess.Popen(
            [str(native.binary("driver_consumer_proc")), "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def call(self, op: str) -> int:
        self.process.stdin.write(op + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline().strip().partition("=")[2].split()[0])

    def stop(self) -> str:
        self.process.stdin.close()
        self.process.wait(timeout=10)
        return self.process.stderr.read()


def faultflow(*args: str) -> None:
    subprocess.run([FAULTFLOW, *args], check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    start = time.monotonic()
    xid = lookup(79)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        say(start, "building the shim (gcc only) and the driver simulator + consumers (real cudart from PyPI)")
        native = build(work / "native")
        toggle = work / "toggle"
        faultflow("shim", "off", "--create", "--file", str(toggle))
        env = environment(native, toggle)

        worker = Worker(native, env)
        worker.call("init")
        worker.call("device:0")
        say(
            start,
            f"worker running with the shim in passthrough: cuMemAlloc -> {worker.call('alloc')}, cuLaunchKernel -> {worker.call('launch')}",
        )

        faultflow("shim", "on", "--file", str(toggle), "--xid", "79", "--expires-in", "1.5")
        switched = time.monotonic()
        say(start, f"node toggle ON: XID 79 ({xid.name}), expires in 1.5 s")
        say(
            start,
            f"  same worker, no restart: cuMemAlloc -> {worker.call('alloc')} ({xid.call_error.driver_name}), "
            f"cuLaunchKernel -> {worker.call('launch')}",
        )
        fresh = subprocess.run([str(native.binary("driver_consumer_proc")), "init"], env=env, capture_output=True, text=True)
        say(start, f"  a process started now: cuInit -> {fresh.stdout.strip().partition('=')[2]} ({xid.init_error.driver_name})")
        rt = subprocess.run(
            [str(native.binary("runtime_consumer_cu12_shared")), "malloc", "lasterror"],
            env={**env, "SIM_INIT_RESULT": "100"},
            capture_output=True,
            text=True,
        )
        say(start, f"  real cudart 12 program: {' '.join(rt.stdout.split())} ({xid.call_error.runtime_name})")

        while worker.call("alloc") != 0:
            if time.monotonic() - switched > 10:
                say(start, "the fault did not expire")
                return 1
        say(start, f"fault expired by itself after {time.monotonic() - switched:.2f} s: cuMemAlloc -> 0")

        faultflow("shim", "on", "--file", str(toggle), "--xid", "48")
        say(start, f"toggle ON XID 48: cuMemAlloc -> {worker.call('alloc')} ({lookup(48).call_error.driver_name})")
        faultflow("shim", "off", "--file", str(toggle))
        say(start, f"toggle OFF: cuMemAlloc -> {worker.call('alloc')}")
        log = worker.stop()
        say(start, "worker's stderr (what a step reads to verify the shim and see injections):")
        for line in log.splitlines():
            print(f"           {line}")
    print(f"demo_total_s: {time.monotonic() - start:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
