"""The lab's GPU device plugin (lab/nodes/deviceplugin/main.go): built from our Go source against the
kubelet's device-plugin API at the pinned Kubernetes release and go-nvml at the pin `nvml-health` uses,
run in each GPU node.

It reads NVML as NVIDIA's plugin does, through go-nvml (cgo, dlopen of libnvidia-ml.so.1). In the lab
that library is the NVML SIMULATOR (lab/native/nvml_simulator.c) enumerating the node's driver tree
(/proc/driver/nvidia/gpus, so UUIDs and bus ids agree with it), with faultflow's NVML interposer
(shim/build/libfaultflow_nvml.so) preloaded and reading the node's toggle: an XID switched on there is
an NVML event the plugin's health check acts on.

Cached in `<cache>/faultflow-deviceplugin-<source hash>/` (the plugin and the simulator it loads),
rebuilt when a source or a pin changes; the Go build cache shares everything it compiles with the
kubelet's build. `python -m lab.nodes.gpu_plugin` builds it (`make real-lab-tools`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab import cache, gomod, nvml_consumer
from lab.native_build import NATIVE, NVML_SHIM, REPO

SOURCE = Path(__file__).parent / "deviceplugin" / "main.go"
NVML_SIMULATOR = NATIVE / "nvml_simulator.c"
# The module versions the kubelet of lab.tools.KUBELET (v1.37.2) is built with, and go-nvml as the
# tests' NVML consumer pins it (its content hash is checked against that pin).
REQUIRES = (
    ("k8s.io/kubelet", "v0.37.2"),
    ("google.golang.org/grpc", "v1.82.1"),
    (nvml_consumer.GO_NVML, nvml_consumer.GO_NVML_VERSION),
)
# Inside the node: its own driver tree (a tmpfs over /proc/driver) and toggle (its /var/lib overlay).
DRIVER_TREE = "/proc/driver/nvidia/gpus"


def _key() -> str:
    digest = hashlib.sha256(SOURCE.read_bytes())
    digest.update(NVML_SIMULATOR.read_bytes())
    digest.update(repr(REQUIRES).encode())
    return digest.hexdigest()[:16]


def folder() -> Path:
    return cache.cache_root() / f"faultflow-deviceplugin-{_key()}"


def binary() -> Path:
    return folder() / "deviceplugin"


def nvml_dir() -> Path:
    """Where the NVML simulator's libnvidia-ml.so.1 the plugin loads is."""
    return folder() / "nvml"


def environment(toggle_file: str) -> dict[str, str]:
    """The plugin's environment: NVML is the simulator over the node's driver tree, with the
    interposer preloaded, driven by `toggle_file` (a path inside the node)."""
    return {
        "LD_LIBRARY_PATH": str(nvml_dir()),
        "LD_PRELOAD": str(NVML_SHIM),
        "FAULTFLOW_TOGGLE_FILE": toggle_file,
        "SIM_NVML_DRIVER_TREE": DRIVER_TREE,
    }


def ensure_built() -> Path:
    """The plugin (and the NVML simulator beside it), built first when the cache lacks them; the NVML
    interposer is built (or found up to date) in the work tree every time: its sources change there."""
    subprocess.run(["make", "-s", "-C", str(REPO / "shim")], check=True)
    target = binary()
    if target.is_file():
        return target
    with cache.exclusive("faultflow-deviceplugin"):
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        print(f"faultflow: building the lab's GPU device plugin into {target.parent}", file=sys.stderr, flush=True)
        start = time.monotonic()
        _build_simulator(target.parent)
        _build_plugin(target)
        print(f"faultflow: built the GPU device plugin in {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
    return target


def _build_simulator(out: Path) -> None:
    library = out / "nvml" / "libnvidia-ml.so.1"
    subprocess.run(["make", "-s", "-C", str(NATIVE), f"BUILD={out}", str(library)], check=True)


def _build_plugin(target: Path) -> None:
    go = gomod.go_binary()
    log = target.parent / "build.log"
    with tempfile.TemporaryDirectory(prefix="faultflow-deviceplugin-") as scratch:
        work = Path(scratch)
        shutil.copy2(SOURCE, work / "main.go")
        requires = "\n".join(f"\t{path} {version}" for path, version in REQUIRES)
        (work / "go.mod").write_text(f"module faultflow.local/deviceplugin\n\ngo 1.25\n\nrequire (\n{requires}\n)\n")
        # cgo: go-nvml dlopen()s libnvidia-ml.so.1 and calls it by symbol.
        env = gomod._env() | {"CGO_ENABLED": "1"}
        partial = target.with_name("deviceplugin.partial")
        with open(log, "w") as sink:
            gomod._run_logged([go, "mod", "tidy"], work, env, sink, log)
            pinned = nvml_consumer._pinned_hash((work / "go.sum").read_text())
            if pinned != nvml_consumer.GO_NVML_H1:
                raise RuntimeError(
                    f"{nvml_consumer.GO_NVML}@{nvml_consumer.GO_NVML_VERSION}: content hash {pinned} != pinned {nvml_consumer.GO_NVML_H1}"
                )
            gomod._run_logged(
                [go, "build", "-p", "2", "-trimpath", "-ldflags=-s -w", "-o", str(partial), "."],
                work,
                env,
                sink,
                log,
                progress="GPU device plugin",
            )
        partial.replace(target)


if __name__ == "__main__":
    try:
        print(ensure_built())
    except gomod.GoMissing as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
