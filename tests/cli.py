"""How tests run the real `faultflow` console script, installed into the same environment as pytest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FAULTFLOW = str(Path(sys.executable).parent / "faultflow")


def faultflow(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([FAULTFLOW, *args], capture_output=True, text=True, timeout=120, **kwargs)
