"""The lab's CUDA worker image: the Debian base + the DRIVER SIMULATOR as libcuda.so.1 + a tiny CUDA program.

On a real GPU node the NVIDIA container toolkit puts the driver's libcuda.so.1 into the container;
here the driver simulator (lab/native/driver_simulator.c, built with gcc) stands at the same path, and
`/usr/local/bin/cuda-worker` (lab/images/cuda_worker.c) is linked against it. Under faultflow's shim
(LD_PRELOAD) the program's log shows the shim's marker and every change of its CUDA result: enough to
run the shimmed worker on real nodes without Dynamo.
"""

from __future__ import annotations

from pathlib import Path

from lab.images import build

HERE = Path(__file__).parent
DRIVER_SOURCE = HERE.parent / "native" / "driver_simulator.c"
WORKER_SOURCE = HERE / "cuda_worker.c"
DRIVER_DIR = "usr/lib/x86_64-linux-gnu"  # where the container toolkit mounts the driver's libraries
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")

CUDA_WORKER = build.Image(
    "faultflow-cuda-worker",
    "0.1.0",
    inputs=(str(DRIVER_SOURCE), str(WORKER_SOURCE), *CFLAGS),
    entrypoint=("/usr/local/bin/cuda-worker",),
    base=build.DEBIAN,
)


def _cuda_worker(rootfs: Path) -> None:
    driver_dir = rootfs / DRIVER_DIR
    driver_dir.mkdir(parents=True)
    driver = driver_dir / "libcuda.so.1"
    # -Bsymbolic as in lab/native/Makefile: the simulator's table holds its own functions, not the shim's.
    build._run(["gcc", *CFLAGS, "-fPIC", "-shared", "-Wl,-Bsymbolic", "-Wl,-soname,libcuda.so.1", str(DRIVER_SOURCE), "-o", str(driver)])
    bin_dir = rootfs / "usr/local/bin"
    bin_dir.mkdir(parents=True)
    build._run(["gcc", *CFLAGS, str(WORKER_SOURCE), "-o", str(bin_dir / "cuda-worker"), str(driver)])


def ensure_cuda_worker() -> build.Image:
    build.ensure_debian()
    build.ensure(CUDA_WORKER, _cuda_worker)
    return CUDA_WORKER
