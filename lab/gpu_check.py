"""`make gpu-check`: the fault libraries against a real NVIDIA GPU, driver and PyTorch.

    python3 -m lab.gpu_check [--nvidia-smi PATH] [--xids 43,48,...]

On a machine with an NVIDIA GPU and driver it builds the shim, installs PyTorch (CUDA wheels from
PyPI, pinned; `FAULTFLOW_GPU_WHEELS=DIR` installs from a wheel folder instead, for machines without
network) into a cached virtual environment, and prints, one `name: value` line each:
  - per seed XID, the exception PyTorch raises for a matmul + synchronize under the toggle
    (and XID 43 in hang mode, bounded, to show a stall that ends in the watchdog's error);
  - `torch_launch_passthrough_ratio`: a cuLaunchKernel-heavy loop (tiny `add_` kernels) through the
    shim with the toggle off over the same loop without it, alternating rounds (target <= 1.01);
  - per seed XID, the NVML event a go-nvml consumer doing the device plugin's health check sees
    through libfaultflow_nvml.so over the real libnvidia-ml (needs Go, like `make envtest`);
  - per seed XID, nvidia-smi's view through libfaultflow_nvml.so.
Without a GPU it says so in one line and exits 2, having changed nothing.

Standard library only (it runs before any virtual environment exists). The toggle is written with
steps.gpu.toggle, the writer `faultflow shim on` uses.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.15.0"
SEED_XIDS = (43, 48, 74, 79, 94, 95, 119, 120)
ROUNDS = 7
LAUNCHES = 20_000
SMI_QUERY = "index,pci.bus_id,ecc.errors.uncorrected.volatile.total,ecc.errors.uncorrected.aggregate.total,remapped_rows.pending"

# The PyTorch side, run in the torch environment: warm up with the toggle off, say "ready", and on
# "go" run the operation and report what it raised.
FAULT_CHILD = """
import sys, torch
x = torch.ones(256, 256, device="cuda"); torch.cuda.synchronize()
print("ready", flush=True); sys.stdin.readline()
try:
    y = x @ x; torch.cuda.synchronize(); print("no exception", flush=True)
except Exception as error:
    print(f"{type(error).__name__}: {str(error).splitlines()[0]}", flush=True)
"""
LAUNCH_CHILD = """
import sys, time, torch
y = torch.zeros(1, device="cuda"); torch.cuda.synchronize()
for _ in range(1000): y.add_(1)
torch.cuda.synchronize(); n = int(sys.argv[1]); start = time.perf_counter_ns()
for _ in range(n): y.add_(1)
torch.cuda.synchronize(); print((time.perf_counter_ns() - start) / n)
"""


class NoGpu(Exception):
    pass


def gpu_present(nvidia_smi: str) -> list[str]:
    """The GPUs `nvidia-smi -L` lists; NoGpu with the reason when there are none."""
    tool = shutil.which(nvidia_smi)
    if tool is None:
        raise NoGpu(f"no NVIDIA GPU here: {nvidia_smi} not found (an NVIDIA driver installs it)")
    try:
        done = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NoGpu(f"no NVIDIA GPU here: {tool} -L failed: {error}") from None
    gpus = [line for line in done.stdout.splitlines() if line.startswith("GPU ")]
    if done.returncode != 0 or not gpus:
        reason = (done.stdout + done.stderr).strip().splitlines()
        raise NoGpu(f"no NVIDIA GPU here: {tool} -L lists none ({reason[0] if reason else f'exit {done.returncode}'})")
    return gpus


def say(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def torch_python() -> Path:
    from lab import cache

    venv = cache.cache_root().parent / "gpu-check" / f"venv-{TORCH.replace('==', '-')}"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        wheels = os.environ.get("FAULTFLOW_GPU_WHEELS")
        source = ["--no-index", "--find-links", wheels] if wheels else []
        subprocess.run([str(python), "-m", "pip", "install", "-q", *source, TORCH], check=True)
        (venv / ".installed").touch()
    return python


def environment(toggle: Path, preload: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "FAULTFLOW_", "LD_PRELOAD"))}
    env["FAULTFLOW_TOGGLE_FILE"] = str(toggle)
    if preload:
        env["LD_PRELOAD"] = str(preload)
    return env


def torch_exception(python: Path, toggle: Path, shim: Path, xid: int, **triggers) -> str:
    from steps.gpu import toggle as record

    record.write(toggle, record.Toggle(on=False))
    child = subprocess.Popen([str(python), "-c", FAULT_CHILD], env=environment(toggle, shim), text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert child.stdin is not None and child.stdout is not None  # both asked for as pipes
    try:
        if child.stdout.readline().strip() != "ready":
            return f"did not start: {child.communicate(timeout=60)[1].strip().splitlines()[-1:]}"
        record.write(toggle, record.Toggle(on=True, xid=xid, gpu=0, **triggers))
        child.stdin.write("go\n")
        child.stdin.flush()
        return child.stdout.readline().strip()
    finally:
        record.write(toggle, record.Toggle(on=False))
        child.kill()
        child.wait()


def launch_ratio(python: Path, toggle: Path, shim: Path) -> tuple[float, float, float]:
    from steps.gpu import toggle as record

    record.write(toggle, record.Toggle(on=False))
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for shimmed in (False, True):
            done = subprocess.run([str(python), "-c", LAUNCH_CHILD, str(LAUNCHES)], check=True, capture_output=True,
                                  text=True, env=environment(toggle, shim if shimmed else None))  # fmt: skip
            times[shimmed].append(float(done.stdout))
    ratio = statistics.median(s / d for s, d in zip(times[True], times[False]))
    return statistics.median(times[False]), statistics.median(times[True]), ratio


def nvml_event(toggle: Path, nvml_shim: Path, xid: int) -> str:
    from lab.nvml_consumer import ensure_built
    from steps.gpu import toggle as record

    record.write(toggle, record.Toggle(on=False))
    consumer = subprocess.Popen([str(ensure_built()), "-timeout-ms", "1000"], env=environment(toggle, nvml_shim),
                                text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert consumer.stdin is not None and consumer.stdout is not None  # both asked for as pipes
    try:
        header = [consumer.stdout.readline().strip()]
        while header[-1].startswith("device "):
            header.append(consumer.stdout.readline().strip())
        if not header[-1].startswith("ready "):
            return f"consumer did not start: {' | '.join(header)}"
        record.write(toggle, record.Toggle(on=True, xid=xid, gpu=0))
        consumer.stdin.write("1000\n")
        consumer.stdin.flush()
        return consumer.stdout.readline().strip()
    finally:
        record.write(toggle, record.Toggle(on=False))
        consumer.kill()
        consumer.wait()


def smi_view(nvidia_smi: str, toggle: Path, nvml_shim: Path, xid: int) -> str:
    from steps.gpu import toggle as record

    record.write(toggle, record.Toggle(on=True, xid=xid, gpu=0))
    try:
        done = subprocess.run([nvidia_smi, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader", "-i", "0"],
                              env=environment(toggle, nvml_shim), capture_output=True, text=True, timeout=120)  # fmt: skip
        return " | ".join((done.stdout + done.stderr).strip().splitlines()) or f"exit {done.returncode}"
    finally:
        record.write(toggle, record.Toggle(on=False))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--nvidia-smi", default="nvidia-smi", help="nvidia-smi to ask which GPUs there are")
    parser.add_argument("--xids", default=",".join(map(str, SEED_XIDS)), help="XIDs to show (default: the seed XIDs)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    try:
        gpus = gpu_present(args.nvidia_smi)
        xids = [int(x) for x in args.xids.split(",")]
        if any(not 1 <= x <= 172 for x in xids):
            raise ValueError
    except NoGpu as error:
        print(f"gpu-check: {error}", file=sys.stderr)
        return 2
    except ValueError:
        print(f"gpu-check: --xids must be XIDs 1-172 separated by commas, got {args.xids}", file=sys.stderr)
        return 2

    start = time.monotonic()
    say("gpus", "; ".join(gpus))
    subprocess.run(["make", "-s", "-C", str(REPO / "shim")], check=True)
    shim, nvml_shim = REPO / "shim/build/libfaultflow_cuda.so", REPO / "shim/build/libfaultflow_nvml.so"
    python = torch_python()
    with tempfile.TemporaryDirectory(prefix="faultflow-gpu-check-") as scratch:
        toggle = Path(scratch) / "toggle"
        for xid in xids:
            say(f"torch_xid_{xid}", torch_exception(python, toggle, shim, xid))
        say("torch_xid_43_hang_2s", torch_exception(python, toggle, shim, 43, mode="hang", hang_ms=2000))
        direct, shimmed, ratio = launch_ratio(python, toggle, shim)
        say("torch_launch_direct_ns", f"{direct:.0f}")
        say("torch_launch_passthrough_ns", f"{shimmed:.0f}")
        say("torch_launch_passthrough_ratio", f"{ratio:.4f}")
        for xid in xids:
            say(f"nvml_event_xid_{xid}", nvml_event(toggle, nvml_shim, xid))
        for xid in xids:
            say(f"nvidia_smi_xid_{xid}", smi_view(shutil.which(args.nvidia_smi), toggle, nvml_shim, xid))
    say("gpu_check_s", f"{time.monotonic() - start:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
