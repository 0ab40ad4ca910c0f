"""Where the lab keeps what it builds or fetches: outside the work tree, shared by every clone.

Building kube-apiserver takes minutes; every clone, worktree and CI run on this machine reuses one
build per pinned version, so the cache is keyed by tool and version, never by checkout.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


def cache_root() -> Path:
    """`$FAULTFLOW_CACHE/envtest`, else `$XDG_CACHE_HOME/faultflow/envtest`, else `~/.cache/...`."""
    if override := os.environ.get("FAULTFLOW_CACHE"):
        return Path(override) / "envtest"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faultflow" / "envtest"


@contextlib.contextmanager
def exclusive(name: str) -> Iterator[None]:
    """Hold a cross-process lock so two `make test` runs do not build the same thing at once."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
