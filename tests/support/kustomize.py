"""kustomize, built from its Go module at a pinned version (like every other tool the tests need:
no release binaries can be downloaded here), for tests that build the deploy/ base as a user does
(`kustomize build`, which `kubectl apply -k` runs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.tools import GoTool, ensure_built

# v5.8.1: the newest release whose go.mod a Go 1.26 toolchain builds (v5.8.2+ need Go 1.27). Its
# go.mod replaces nothing, so the sibling version is never used.
KUSTOMIZE = GoTool(
    name="kustomize",
    module="sigs.k8s.io/kustomize/kustomize/v5",
    version="v5.8.1",
    package="sigs.k8s.io/kustomize/kustomize/v5",
    sibling_version="v5.8.1",
)


def build(directory: Path) -> str:
    """`kustomize build DIRECTORY`: the YAML stream a user's `kubectl apply -k` would apply."""
    binary = ensure_built(KUSTOMIZE)
    done = subprocess.run([str(binary), "build", str(directory)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"kustomize build {directory} failed: {done.stderr.strip()}")
    return done.stdout
