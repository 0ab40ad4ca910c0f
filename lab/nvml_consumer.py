"""Builds `nvml-health`, the go-nvml consumer in lab/native/nvml_health, into the cache.

go-nvml is fetched from the Go module proxy at a pinned version and its content hash checked against
our pin (go.sum's `h1:`); the program is built with cgo (go-nvml dlopen()s libnvidia-ml.so.1 and calls
it by symbol, as the NVIDIA device plugin does). One build per pin and source, shared by every clone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from lab import cache, gomod

GO_NVML = "github.com/NVIDIA/go-nvml"
GO_NVML_VERSION = "v0.13.4-1"
GO_NVML_H1 = "h1:2E7RdOLBxHGSXq8sUw+c5Y0aWmFT7Cj+ZdjYulgUH18="
SOURCE = Path(__file__).resolve().parent / "native" / "nvml_health"


def _source_hash() -> str:
    digest = hashlib.sha256(GO_NVML_VERSION.encode())
    for path in sorted(SOURCE.glob("*.go")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def binary_path() -> Path:
    return cache.cache_root() / f"nvml-health-{GO_NVML_VERSION}-{_source_hash()}" / "nvml-health"


def _go_mod() -> str:
    return f"module faultflow.local/nvml-health\n\ngo 1.25\n\nrequire {GO_NVML} {GO_NVML_VERSION}\n"


def _pinned_hash(go_sum: str) -> str | None:
    for line in go_sum.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == GO_NVML and parts[1] == GO_NVML_VERSION:
            return parts[2]
    return None


def ensure_built() -> Path:
    """The nvml-health binary, built first when the cache does not have it."""
    out = binary_path()
    if out.exists():
        return out
    with cache.exclusive(out.parent.name):
        if out.exists():
            return out
        go = gomod.go_binary()
        out.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, CGO_ENABLED="1", GOFLAGS="-mod=mod")
        with tempfile.TemporaryDirectory(prefix="faultflow-nvml-health-") as scratch:
            work = Path(scratch)
            for path in SOURCE.glob("*.go"):
                shutil.copyfile(path, work / path.name)
            (work / "go.mod").write_text(_go_mod())
            for cmd in ([go, "mod", "tidy"], [go, "build", "-trimpath", "-o", str(out) + ".partial", "."]):
                done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    raise RuntimeError(f"`{' '.join(cmd[:3])}` failed for nvml-health: {done.stderr.strip()[-2000:]}")
                if cmd[1] == "mod":
                    actual = _pinned_hash((work / "go.sum").read_text())
                    if actual != GO_NVML_H1:
                        raise RuntimeError(f"{GO_NVML}@{GO_NVML_VERSION}: content hash {actual} != pinned {GO_NVML_H1}")
        Path(str(out) + ".partial").replace(out)  # appear whole or not at all
    return out
