"""`make demo`: the whole GPU fault flow on this machine, as a user would run it.

    faultflow lab up      (real kube-apiserver + simulated GPU nodes, workers, frontend, NVSentinel)
    faultflow run gpu-fault --lab -p xid=79
    faultflow lab down    (always, also when the run fails or is interrupted)

Each is the real command in a subprocess; the run's progress, timeline and recovery figures stream
through. One GPU worker, so the fault is visible in the traffic (with two, the frontend routes around
the failed GPU and the timeline shows no outage), and NVSentinel delays of a few seconds so the
phases are far enough apart to read. Prints `demo_total_s: X` last.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.runner import faultflow_command

EVIDENCE = Path("faultflow-runs") / "demo"  # kept after the lab is gone: the report, JUnit, plot
NVSENTINEL = {"detect_delay_s": 2, "quarantine_delay_s": 1, "drain_delay_s": 2}


def faultflow(*args: str) -> int:
    return subprocess.run([*faultflow_command(), *args]).returncode


def main() -> int:
    start = time.monotonic()
    lab_dir = Path(tempfile.mkdtemp(prefix="faultflow-demo-")) / ".lab"
    code = faultflow("lab", "up", "--dir", str(lab_dir), "--workers", "1", "--nvsentinel", json.dumps(NVSENTINEL))
    try:
        if code == 0:
            shutil.rmtree(EVIDENCE, ignore_errors=True)
            code = faultflow("run", "gpu-fault", "--lab", str(lab_dir), "-p", "xid=79", "--evidence", str(EVIDENCE))
    finally:
        faultflow("lab", "down", "--dir", str(lab_dir))
        shutil.rmtree(lab_dir.parent, ignore_errors=True)
    print(f"demo_total_s: {time.monotonic() - start:.1f}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
