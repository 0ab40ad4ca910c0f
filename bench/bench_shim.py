"""Shim passthrough cost: `cuCtxGetCurrent` fetched through cuGetProcAddress, direct vs through the shim.

Both run side by side in one invocation as adjacent pairs of short rounds, so drift in machine speed
hits both alike; each round is a new process with its own address layout. The figure is the median
of the per-pair ratios. Where valgrind exists, instruction counts (callgrind) give the same
ratio free of noise. The reference shim's approach (fopen of a flag file on every call) is measured
with our own code for comparison.

    shim_passthrough_ratio: shim / direct (target <= 1.10)
    reference_fopen_vs_shim: fopen-per-call / shim (target >= 100)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from callgrind import instructions_per_call  # noqa: E402  (bench/, beside this script)

from lab.native_build import build  # noqa: E402

ROUNDS = 41
CALLS = 5_000_000
FOPEN_CALLS = 200_000


def compile_bench(work: Path) -> Path:
    binary = work / "shim_bench"
    subprocess.run(["gcc", "-O2", str(REPO / "bench" / "shim_bench.c"), "-o", str(binary), "-ldl"], check=True)
    return binary


def environment(native, work: Path, shim: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "FAULTFLOW_", "LD_PRELOAD"))}
    env["LD_LIBRARY_PATH"] = str(native.driver_dir)
    if shim:
        toggle = work / "toggle"
        toggle.write_bytes(b"0" + b" " * 62 + b"\n")
        env.update(LD_PRELOAD=str(native.shim), FAULTFLOW_TOGGLE_FILE=str(toggle), FAULTFLOW_SHIM_QUIET="1")
    return env


def time_per_call(binary: Path, env: dict, *args: str) -> float:
    done = subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        native = build(work / "native")
        binary = compile_bench(work)
        direct_env, shim_env = environment(native, work, False), environment(native, work, True)
        direct, shimmed = [], []
        for _ in range(ROUNDS):
            direct.append(time_per_call(binary, direct_env, "direct", str(CALLS)))
            shimmed.append(time_per_call(binary, shim_env, "direct", str(CALLS)))
        flag = work / "flag"
        flag.write_text("0\n")
        fopen = statistics.median(time_per_call(binary, direct_env, "fopen", str(FOPEN_CALLS), str(flag)) for _ in range(3))
        direct_ns, shim_ns = statistics.median(direct), statistics.median(shimmed)
        ratio = statistics.median(s / d for s, d in zip(shimmed, direct))
        print(f"shim_direct_ns: {direct_ns:.2f}")
        print(f"shim_passthrough_ns: {shim_ns:.2f}")
        print(f"shim_passthrough_ratio: {ratio:.3f}")
        print(f"reference_fopen_ns: {fopen:.1f}")
        print(f"reference_fopen_vs_shim: {fopen / shim_ns:.0f}")
        if shutil.which("valgrind"):
            direct_ir = instructions_per_call([str(binary), "direct"], direct_env, work, "direct")
            shim_ir = instructions_per_call([str(binary), "direct"], shim_env, work, "shimmed")
            print(f"shim_passthrough_instructions_per_call: {direct_ir:.1f} -> {shim_ir:.1f}")
            print(f"shim_passthrough_instr_ratio: {shim_ir / direct_ir:.3f}")


if __name__ == "__main__":
    main()
