"""Builds the shim and the native programs around it: the driver simulator and CUDA consumers.

Shared by the shim tests, the benchmark, the demo and (later) the lab's worker processes.

The consumers link the real cudart from the PyPI wheels (`nvidia-cuda-runtime-cu12` and
`nvidia-cuda-runtime` for CUDA 13) that the test extra installs: no CUDA toolkit is needed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NATIVE = Path(__file__).resolve().parent / "native"
SHIM = REPO / "shim" / "build" / "libfaultflow_cuda.so"
NVML_SHIM = REPO / "shim" / "build" / "libfaultflow_nvml.so"


def _package_dir(name: str) -> Path:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed: run `make venv` (it installs the test extra)")
    return Path(next(iter(spec.submodule_search_locations)))


def cudart_dirs() -> dict[str, Path]:
    """Library folders of the real cudart 12 and 13 from PyPI."""
    return {
        "cu12": _package_dir("nvidia.cuda_runtime") / "lib",
        "cu13": _package_dir("nvidia.cu13") / "lib",
    }


@dataclass(frozen=True)
class Native:
    build: Path
    shim: Path
    cudart: dict[str, Path]

    @property
    def driver_dir(self) -> Path:
        return self.build / "driver"

    @property
    def nvml_dir(self) -> Path:
        """Where the NVML simulator's libnvidia-ml.so.1 is."""
        return self.build / "nvml"

    @property
    def nvml_shim(self) -> Path:
        return NVML_SHIM

    def binary(self, name: str) -> Path:
        return self.build / name


def build(build_dir: Path) -> Native:
    subprocess.run(["make", "-s", "-C", str(REPO / "shim")], check=True)
    dirs = cudart_dirs()
    subprocess.run(
        ["make", "-s", "-C", str(NATIVE), f"BUILD={build_dir}", f"CUDART12={dirs['cu12']}", f"CUDART13={dirs['cu13']}"],
        check=True,
    )
    return Native(build=build_dir, shim=SHIM, cudart=dirs)
