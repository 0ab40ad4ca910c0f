"""NVML interposer passthrough cost: `nvmlDeviceGetIndex` fetched by dlsym, direct vs through
libfaultflow_nvml.so with the toggle mapped and off.

As bench_shim.py: both run side by side in one invocation as adjacent pairs of short rounds, each a
new process; the figure is the median of the per-pair ratios. Where valgrind exists, instruction counts
(callgrind) give the same ratio free of noise. Underneath is the NVML simulator, whose query is about as
cheap as a real NVML's cached one, so the ratio is an upper bound of what a real node pays.

    nvml_passthrough_ratio: interposed / direct (target <= 1.10)
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
from steps.gpu import toggle  # noqa: E402

ROUNDS = 31
CALLS = 5_000_000


def compile_bench(work: Path) -> Path:
    binary = work / "nvml_bench"
    subprocess.run(["gcc", "-O2", str(REPO / "bench" / "nvml_bench.c"), "-o", str(binary), "-ldl"], check=True)
    return binary


def environment(native, work: Path, interposed: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "FAULTFLOW_", "LD_PRELOAD", "SIM_"))}
    env["LD_LIBRARY_PATH"] = str(native.nvml_dir)
    if interposed:
        path = work / "toggle"
        toggle.write(path, toggle.Toggle(on=False))
        env.update(LD_PRELOAD=str(native.nvml_shim), FAULTFLOW_TOGGLE_FILE=str(path), FAULTFLOW_SHIM_QUIET="1")
    return env


def time_per_call(binary: Path, env: dict, calls: int) -> float:
    done = subprocess.run([str(binary), str(calls)], env=env, capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        native = build(work / "native")
        binary = compile_bench(work)
        direct_env, shim_env = environment(native, work, False), environment(native, work, True)
        direct, shimmed = [], []
        for _ in range(ROUNDS):
            direct.append(time_per_call(binary, direct_env, CALLS))
            shimmed.append(time_per_call(binary, shim_env, CALLS))
        ratio = statistics.median(s / d for s, d in zip(shimmed, direct))
        print(f"nvml_direct_ns: {statistics.median(direct):.2f}")
        print(f"nvml_passthrough_ns: {statistics.median(shimmed):.2f}")
        print(f"nvml_passthrough_ratio: {ratio:.3f}")
        if shutil.which("valgrind"):
            direct_ir = instructions_per_call([str(binary)], direct_env, work, "direct")
            shim_ir = instructions_per_call([str(binary)], shim_env, work, "shimmed")
            print(f"nvml_passthrough_instructions_per_call: {direct_ir:.1f} -> {shim_ir:.1f}")
            print(f"nvml_passthrough_instr_ratio: {shim_ir / direct_ir:.3f}")


if __name__ == "__main__":
    main()
