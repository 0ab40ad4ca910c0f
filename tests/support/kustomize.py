"""kustomize (`lab.tools.KUSTOMIZE`, built with the other pinned tools before pytest), for tests that
build the deploy/ base as a user does (`kustomize build`, which `kubectl apply -k` runs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.tools import KUSTOMIZE, ensure_built


def build(directory: Path) -> str:
    """`kustomize build DIRECTORY`: the YAML stream a user's `kubectl apply -k` would apply."""
    binary = ensure_built(KUSTOMIZE)
    done = subprocess.run([str(binary), "build", str(directory)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"kustomize build {directory} failed: {done.stderr.strip()}")
    return done.stdout
