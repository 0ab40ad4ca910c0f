"""`abort_latency_s`: a stop condition firing → the fault reverted, on the simulated lab (issue 18).

One `faultflow run gpu-fault --lab` (XID 79, one worker) with `abort-if=cordoned>0 for 1s`: NVSentinel's
simulator cordons the node, the watch-abort daemon fires, the runner stops the running stage as Argo
would after the watcher's `argo stop`, and the exit handler's final-cleanup switches the toggle off.
Prints `abort_latency_s` (the watcher's `aborted` event → final-cleanup's `fault_cleared`). Needs what `faultflow lab up` needs (the control plane built by `make envtest`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTFLOW = [sys.executable, "-c", "from steps.cli import run; run()"]


def _faultflow(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*FAULTFLOW, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def _first(path: Path, event: str) -> float | None:
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == event:
            return float(record["time"])
    return None


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        lab = Path(folder) / ".lab"
        up = _faultflow("lab", "up", "--dir", str(lab), "--workers", "1")
        if up.returncode != 0:
            raise SystemExit(f"lab up failed: {up.stderr.strip()[-300:]}")
        try:
            run = _faultflow("run", "gpu-fault", "--lab", str(lab), "-p", "xid=79", "-p", "abort-if=cordoned>0 for 1s")
            runs = sorted((lab / "runs").iterdir())
            evidence = runs[-1] if runs else lab
            aborted = _first(evidence / "watch-abort" / "step-events.jsonl", "aborted")
            cleared = _first(evidence / "final-cleanup" / "step-events.jsonl", "fault_cleared")
            if run.returncode != 4 or aborted is None or cleared is None:
                raise SystemExit(f"the run was not aborted (exit {run.returncode}): {run.stdout.strip()[-500:]}")
            print(f"abort_latency_s: {cleared - aborted:.2f}")
        finally:
            _faultflow("lab", "down", "--dir", str(lab))


if __name__ == "__main__":
    main()
