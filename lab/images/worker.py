"""The lab's workload images: GPU workers over the DRIVER SIMULATOR, and the frontend SIMULATOR.

On a real GPU node the NVIDIA container toolkit puts the driver's libcuda.so.1 into the container;
here the driver simulator (lab/native/driver_simulator.c, built with gcc) stands at the same path.

* `faultflow-cuda-worker`: the Debian base + the driver simulator + `/usr/local/bin/cuda-worker`
  (lab/images/cuda_worker.c, linked against it). Under faultflow's shim (LD_PRELOAD) its log shows
  the shim's marker and every change of its CUDA result: the shimmed worker on real nodes without Dynamo.
* `faultflow-lab-worker`: the same driver + lab/worker_process.py (standard library only), the lab's
  engine-loop worker with its /health and /generate (it listens on the pod's loopback for now).
* `faultflow-frontend-simulator`: the Debian base + aiohttp (pyproject's `lab` pin) +
  lab/inference_simulator.py, the OpenAI-compatible API on :8000 of the pod (its entry point), and
  the `lab` modules of the DGD's routing frontend (`python -m lab.frontend`, lab/frontend.py): what the
  operator SIMULATOR runs for a DGD's frontend component on real nodes.
* `faultflow-lab-operator`, `faultflow-lab-nvsentinel`: the steps image + the modules of the DGD
  operator SIMULATOR (a Deployment on real nodes) and of the NVSENTINEL SIMULATOR (a DaemonSet).
"""

from __future__ import annotations

import tomllib
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


LAB_DIR = "opt/faultflow-lab"  # the lab's own Python files in an image (run as scripts: no package)
LAB_WORKER = build.Image(
    "faultflow-lab-worker",
    "0.1.0",
    inputs=(str(HERE.parent / "worker_process.py"),),
    entrypoint=("python3", f"/{LAB_DIR}/worker_process.py"),
    base=CUDA_WORKER,
)
FRONTEND_PORT = 8000
FRONTEND_MODULES = ("inference_simulator.py", "frontend.py")


def _lab_worker(rootfs: Path) -> None:
    folder = rootfs / LAB_DIR
    folder.mkdir(parents=True)
    (folder / "worker_process.py").write_bytes((HERE.parent / "worker_process.py").read_bytes())


def ensure_lab_worker() -> build.Image:
    ensure_cuda_worker()
    build.ensure(LAB_WORKER, _lab_worker)
    return LAB_WORKER


def _aiohttp_pin() -> str:
    with open(HERE.parents[1] / "pyproject.toml", "rb") as handle:
        pins = tomllib.load(handle)["project"]["optional-dependencies"]["lab"]
    return next(pin for pin in pins if pin.startswith("aiohttp=="))


def frontend_image() -> build.Image:
    return build.Image(
        "faultflow-frontend-simulator",
        "0.1.0",
        inputs=(*(str(HERE.parent / name) for name in FRONTEND_MODULES), _aiohttp_pin()),
        entrypoint=("python3", f"/{LAB_DIR}/inference_simulator.py", "--host", "0.0.0.0", "--port", str(FRONTEND_PORT)),
        user="65534",  # nobody: it needs nothing
        # `python -m lab.frontend` finds the package copy under LAB_DIR.
        env=(*build.Image.env, f"PYTHONPATH=/{LAB_DIR}"),
        base=build.DEBIAN,
    )


def _frontend(rootfs: Path) -> None:
    from lab.images import product

    product.pip_target(rootfs / product.SITE, _aiohttp_pin())
    folder = rootfs / LAB_DIR
    folder.mkdir(parents=True)
    (folder / "inference_simulator.py").write_bytes((HERE.parent / "inference_simulator.py").read_bytes())
    package = folder / "lab"  # only these modules: they import nothing else of lab/ (nor steps/)
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in FRONTEND_MODULES:
        (package / name).write_bytes((HERE.parent / name).read_bytes())


def ensure_frontend() -> build.Image:
    build.ensure_debian()
    image = frontend_image()
    build.ensure(image, _frontend)
    return image


# The images of the simulators that run as pods: the steps image (steps and its Kubernetes client) plus
# the lab modules each runs, as a package under LAB_DIR. Only these: they import nothing else of lab/.
OPERATOR_MODULES = ("__init__.py", "informer.py", "simulators/__init__.py", "simulators/dgd_plan.py", "simulators/dgd_operator.py")
NVSENTINEL_MODULES = (
    "__init__.py",
    "gpu_nodes.py",
    "host_paths.py",
    "informer.py",
    "layout.py",
    "nvsentinel_metrics.py",
    "nvsentinel_simulator.py",
    "processes.py",
    "simulators/__init__.py",
    "simulators/nvsentinel_node.py",
)


def _on_steps(name: str, modules: tuple[str, ...], main: str) -> build.Image:
    from lab.images import product

    steps = product.steps_image()
    return build.Image(
        name,
        "0.1.0",
        inputs=tuple(str(HERE.parent / module) for module in modules),
        entrypoint=("python3", "-m", main),
        user=steps.user,
        env=(*steps.env, f"PYTHONPATH=/{LAB_DIR}"),
        base=steps,
    )


def _copier(modules: tuple[str, ...]):
    def populate(rootfs: Path) -> None:
        for module in modules:
            target = rootfs / LAB_DIR / "lab" / module
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((HERE.parent / module).read_bytes())

    return populate


def operator_image() -> build.Image:
    return _on_steps("faultflow-lab-operator", OPERATOR_MODULES, "lab.simulators.dgd_operator")


def nvsentinel_image() -> build.Image:
    return _on_steps("faultflow-lab-nvsentinel", NVSENTINEL_MODULES, "lab.simulators.nvsentinel_node")


def ensure_operator() -> build.Image:
    from lab.images import product

    product.ensure_steps()
    image = operator_image()
    build.ensure(image, _copier(OPERATOR_MODULES))
    return image


def ensure_nvsentinel() -> build.Image:
    from lab.images import product

    product.ensure_steps()
    image = nvsentinel_image()
    build.ensure(image, _copier(NVSENTINEL_MODULES))
    return image
