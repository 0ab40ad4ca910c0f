"""`kubectl` (lab.tools.KUBECTL, the API server's own release) run against a lab, as a user runs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lab import tools

TIMEOUT_S = 600  # `apply -k` of the whole base on 2 busy cores


def kubectl(kubeconfig: Path, *args: str, timeout_s: float = TIMEOUT_S) -> str:
    """`kubectl ARGS` with the lab's kubeconfig; a non-zero exit raises with what it printed."""
    binary = tools.ensure_built(tools.KUBECTL)
    # The user's own kubeconfig or context must not redirect the lab's client.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBECONFIG")}
    env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc.stdout
