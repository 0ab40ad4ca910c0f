"""How tests run the real `faultflow` console script, installed into the same environment as pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FAULTFLOW = str(Path(sys.executable).parent / "faultflow")


def faultflow(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([FAULTFLOW, *args], capture_output=True, text=True, timeout=120, **kwargs)


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`faultflow …` with extra environment and a longer default timeout (lab and whole runs)."""
    return subprocess.run([FAULTFLOW, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
