"""The lab's GPU device plugin (lab/nodes/deviceplugin/main.go): built from our Go source against the
kubelet's device-plugin API at the pinned Kubernetes release, run in each GPU node.

Cached in `<cache>/faultflow-deviceplugin-<source hash>/deviceplugin`, rebuilt when the source or a
pin changes; the Go build cache shares everything it compiles with the kubelet's build.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lab import cache, gomod

SOURCE = Path(__file__).parent / "deviceplugin" / "main.go"
# The module versions the kubelet of lab.tools.KUBELET (v1.37.2) is built with.
REQUIRES = (("k8s.io/kubelet", "v0.37.2"), ("google.golang.org/grpc", "v1.82.1"))


def _key() -> str:
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(repr(REQUIRES).encode())
    return digest.hexdigest()[:16]


def binary() -> Path:
    return cache.cache_root() / f"faultflow-deviceplugin-{_key()}" / "deviceplugin"


def ensure_built() -> Path:
    target = binary()
    if target.is_file():
        return target
    with cache.exclusive("faultflow-deviceplugin"):
        if target.is_file():
            return target
        go = gomod.go_binary()
        target.parent.mkdir(parents=True, exist_ok=True)
        log = target.parent / "build.log"
        print(f"faultflow: building the lab's GPU device plugin into {target.parent}", file=sys.stderr, flush=True)
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="faultflow-deviceplugin-") as scratch:
            work = Path(scratch)
            shutil.copy2(SOURCE, work / "main.go")
            requires = "\n".join(f"\t{path} {version}" for path, version in REQUIRES)
            (work / "go.mod").write_text(f"module faultflow.local/deviceplugin\n\ngo 1.25\n\nrequire (\n{requires}\n)\n")
            env = gomod._env()
            partial = target.with_name("deviceplugin.partial")
            with open(log, "w") as sink:
                gomod._run_logged([go, "mod", "tidy"], work, env, sink, log)
                gomod._run_logged(
                    [go, "build", "-p", "2", "-trimpath", "-ldflags=-s -w", "-o", str(partial), "."],
                    work,
                    env,
                    sink,
                    log,
                    progress="GPU device plugin",
                )
            partial.replace(target)
        print(f"faultflow: built the GPU device plugin in {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
    return target
