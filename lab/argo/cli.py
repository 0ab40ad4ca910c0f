"""The `argo` CLI of one Argo line (lab.tools.ARGO_CLIS) run against a lab, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from lab import tools

TIMEOUT_S = 300


def argo(kubeconfig: Path, line: str, *args: str, check: bool = True, timeout_s: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """`argo ARGS` with the lab's kubeconfig; `check`: a non-zero exit raises with what it printed."""
    binary = tools.ensure_built(tools.ARGO_CLIS[line])
    # The user's own Argo server, namespace or token must not redirect the lab's CLI.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARGO_", "KUBECONFIG"))}
    env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout_s)
    if check and proc.returncode != 0:
        raise RuntimeError(f"argo {' '.join(args)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc


def submit(kubeconfig: Path, line: str, namespace: str, manifest: Path) -> str:
    """`argo submit` a Workflow file; returns the workflow's name."""
    return argo(kubeconfig, line, "submit", "-n", namespace, str(manifest), "-o", "name").stdout.strip()


def get(kubeconfig: Path, line: str, namespace: str, name: str) -> dict:
    return json.loads(argo(kubeconfig, line, "get", "-n", namespace, name, "-o", "json").stdout)


def wait(kubeconfig: Path, line: str, namespace: str, name: str, timeout_s: float = TIMEOUT_S) -> dict:
    """`argo wait` until the workflow completes (whatever its phase), then the workflow as `argo get` shows it."""
    argo(kubeconfig, line, "wait", "-n", namespace, name, check=False, timeout_s=timeout_s)
    return get(kubeconfig, line, namespace, name)
