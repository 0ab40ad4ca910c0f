"""Instructions per call under callgrind: the stable figure beside the noisy timings of the shim benchmarks.

Shared by bench_shim.py and bench_nvml.py (run as scripts, so this sits beside them on sys.path).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

CALLS = 1_000_000


def instructions(argv: list[str], env: dict, calls: int, out: Path) -> int:
    """Instructions callgrind counts for the whole program `argv + [calls]`."""
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv, str(calls)],
        env=env,
        capture_output=True,
        check=True,
    )
    summary = next(line for line in out.read_text().splitlines() if line.startswith("summary:"))
    return int(summary.split()[1])


def instructions_per_call(argv: list[str], env: dict, work: Path, tag: str) -> float:
    """The program with CALLS calls minus the same program with none: start-up cancels out."""
    counts = [instructions(argv, env, calls, work / f"callgrind.{tag}.{calls}") for calls in (CALLS, 0)]
    return (counts[0] - counts[1]) / CALLS
