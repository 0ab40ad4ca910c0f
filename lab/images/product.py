"""The product's images (images/steps, images/shim, images/node-agent) built here without Docker, as
their Dockerfiles say.

A registry build runs `docker build -f images/<name>/Dockerfile .`; this machine has no Docker engine,
so the lab follows the same Dockerfile through its own pipeline (lab.images.build: umoci layers over
the lab's Debian or busybox base). What the final image is — user, entry point, environment, the
paths the files land at, the account it creates — is read from the Dockerfile (lab.images.dockerfile),
never restated here; what the build stage does is done the same way with the same pinned inputs:

* steps: the wheel of `steps/` alone (the build stage's COPY lines, pip wheel with the pinned
  setuptools, offline), installed with its dependencies as pyproject.toml pins them, from PyPI, binary
  wheels only, for the image's Python 3.11 and glibc, into one layer over the Debian base (whose
  python3 is 3.11); its console scripts point at the image's /usr/bin/python3;
* shim: `make -C shim` + `strip --strip-unneeded` in a scratch copy of shim/, and install.sh, over
  the lab's busybox base;
* node-agent: the Dockerfile's COPY lines themselves (the files of `steps` it names, its `faultflow`
  script) and its build stage's click pin (pip, binary wheel) over the Debian base, whose python3 is
  the one its apt line pins.

Base images differ from the Dockerfiles' (python:3.11-slim, busybox:glibc): the lab's are built from
Debian packages here, and nothing is pulled. Each image is cached by the hash of everything it is
made from (the Dockerfile included).
"""

from __future__ import annotations

import configparser
import re
import shutil
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

from lab.images import build
from lab.images.dockerfile import FinalStage, final_stage

REPO = Path(__file__).resolve().parents[2]
STEPS_DOCKERFILE = REPO / "images" / "steps" / "Dockerfile"
SHIM_DOCKERFILE = REPO / "images" / "shim" / "Dockerfile"
NODE_AGENT_DOCKERFILE = REPO / "images" / "node-agent" / "Dockerfile"
# The node-agent build stage's `pip install --target <dir> <pin>`: what its COPY --from=build takes.
_PIP_TARGET = re.compile(r"pip install [^&]*--target (\S+) (\S+==\S+)")
# Where Debian's python3 looks for locally installed packages (sys.path of /usr/bin/python3).
SITE = "usr/local/lib/python3.11/dist-packages"
IMAGE_PYTHON = (3, 11)
MANIFEST = "usr/share/faultflow/python-packages.txt"  # what exactly the image's Python holds
# The Debian base's glibc (bookworm: 2.36): the newest manylinux tag its wheels may carry.
IMAGE_GLIBC_MINOR = {"bookworm": 36}[build.DEBIAN_SUITE]


def _tree(root: Path) -> tuple[str, ...]:
    """Every file under `root` (sorted, no build outputs or caches) as absolute paths: cache-key inputs."""
    skip = {"__pycache__", "build"}
    return tuple(str(p) for p in sorted(root.rglob("*")) if p.is_file() and not skip & set(p.relative_to(root).parts))


def _version() -> str:
    """The package version (pyproject.toml), the images' tag as in the Dockerfiles' `-t …:0.1.0`."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["version"]


def _dependencies() -> tuple[str, ...]:
    """pyproject.toml's run-time `dependencies`: exactly what the wheel requires, pinned there."""
    with open(REPO / "pyproject.toml", "rb") as handle:
        return tuple(tomllib.load(handle)["project"]["dependencies"])


def steps_deps_image() -> build.Image:
    """The steps image's lower layer: its pinned dependencies alone, so a change to `steps/` rebuilds
    only the small layer above (the wheel), not the ~80 MB of numpy, matplotlib and the client."""
    return build.Image(
        "faultflow-steps-deps",
        _version(),
        inputs=(*_dependencies(), f"python{IMAGE_PYTHON[0]}.{IMAGE_PYTHON[1]}", *_platforms()),
        entrypoint=build.DEBIAN.entrypoint,
        base=build.DEBIAN,
    )


def steps_image() -> build.Image:
    stage = final_stage(STEPS_DOCKERFILE)
    return build.Image(
        "faultflow-steps",
        _version(),
        inputs=(str(STEPS_DOCKERFILE), str(REPO / "pyproject.toml"), str(REPO / "README.md"), *_tree(REPO / "steps")),
        entrypoint=stage.entrypoint,
        user=stage.user,
        env=(*build.DEBIAN.env, *stage.env_list),
        base=steps_deps_image(),
    )


def node_agent_pins() -> tuple[str, str]:
    """(target directory, requirement) of the node-agent Dockerfile's build stage (`pip install --target`)."""
    found = _PIP_TARGET.search(NODE_AGENT_DOCKERFILE.read_text())
    if found is None:
        raise RuntimeError(f"faultflow: {NODE_AGENT_DOCKERFILE} has no `pip install --target DIR NAME==VERSION` build stage")
    return found.group(1), found.group(2)


def node_agent_image() -> build.Image:
    stage = final_stage(NODE_AGENT_DOCKERFILE)
    sources = [str(REPO / s) for c in stage.copies if not c.stage for s in c.sources]
    return build.Image(
        "faultflow-node-agent",
        _version(),
        inputs=(str(NODE_AGENT_DOCKERFILE), *sources, *node_agent_pins(), *_platforms()),
        entrypoint=stage.entrypoint,
        user=stage.user,
        env=(*build.DEBIAN.env, *stage.env_list),
        base=build.DEBIAN,
    )


def shim_image() -> build.Image:
    stage = final_stage(SHIM_DOCKERFILE)
    return build.Image(
        "faultflow-shim",
        _version(),
        inputs=(str(SHIM_DOCKERFILE), str(REPO / "images" / "shim" / "install.sh"), *_tree(REPO / "shim")),
        entrypoint=stage.entrypoint,
        user=stage.user,
        env=(*build.BUSYBOX.env, *stage.env_list),
        base=build.BUSYBOX,
    )


# ---- steps ----------------------------------------------------------------------------------------
def _wheel(scratch: Path) -> Path:
    """The build stage: its COPY lines' files into a source folder, then `pip wheel` (offline, the
    venv's pinned setuptools — pyproject's [build-system] pin)."""
    src = scratch / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "steps", src / "steps", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = scratch / "wheels"
    build._run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                "--wheel-dir", str(wheels), str(src)])  # fmt: skip
    (wheel,) = wheels.glob("faultflow-*.whl")
    return wheel


def _platforms() -> list[str]:
    """manylinux tags the image's glibc runs, newest first (pip does not widen a given --platform)."""
    return [f"manylinux_2_{minor}_x86_64" for minor in range(IMAGE_GLIBC_MINOR, 16, -1)] + [
        "manylinux2014_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
    ]


def _console_scripts(site: Path) -> dict[str, str]:
    scripts: dict[str, str] = {}
    for entry_points in site.glob("*.dist-info/entry_points.txt"):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(entry_points)
        if parser.has_section("console_scripts"):
            scripts.update(parser["console_scripts"])
    return scripts


def _account_lines(rootfs: Path, base: build.Image, stage: FinalStage) -> None:
    """/etc/passwd and /etc/group of the base plus the Dockerfile's `useradd` accounts (no home made)."""
    for name in ("passwd", "group"):
        text = base_file(base, f"etc/{name}").decode()
        for account in stage.accounts:
            text += (
                f"{account.name}:x:{account.uid}:{account.uid}::/home/{account.name}:{account.shell}\n"
                if name == "passwd"
                else f"{account.name}:x:{account.uid}:\n"
            )
        (rootfs / "etc").mkdir(exist_ok=True)
        (rootfs / "etc" / name).write_text(text)
        (rootfs / "etc" / name).chmod(0o644)


def pip_target(site: Path, *args: str) -> None:
    """`pip install --target` for the image's Python and glibc (binary wheels only, from PyPI), then
    the console scripts rewritten for the image's /usr/bin/python3 (pip's name this interpreter)."""
    if sys.version_info[:2] != IMAGE_PYTHON:  # compiled .pyc and the resolver's markers are the image's
        raise RuntimeError(
            f"faultflow: the steps image is built with Python {IMAGE_PYTHON[0]}.{IMAGE_PYTHON[1]} (this is {sys.version.split()[0]})"
        )
    platforms = [arg for tag in _platforms() for arg in ("--platform", tag)]
    build._run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--only-binary=:all:",
                "--python-version", f"{IMAGE_PYTHON[0]}.{IMAGE_PYTHON[1]}", "--implementation", "cp",
                *platforms, "--target", str(site), *args])  # fmt: skip
    shutil.rmtree(site / "bin", ignore_errors=True)
    bin_dir = site.parents[2] / "bin"  # <rootfs>/usr/local/bin
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, target in _console_scripts(site).items():
        module, _, attribute = target.partition(":")
        script = bin_dir / name
        script.write_text(f"#!/usr/bin/python3\nimport sys\nfrom {module} import {attribute.split('.')[0]}\nsys.exit({attribute}())\n")
        script.chmod(0o755)


def _freeze(site: Path) -> str:
    return build._run([sys.executable, "-m", "pip", "list", "--path", str(site), "--format", "freeze"]).stdout


def _steps_deps(rootfs: Path) -> None:
    site = rootfs / SITE
    pip_target(site, *_dependencies())
    (rootfs / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (rootfs / MANIFEST).write_text(_freeze(site))


def _steps(rootfs: Path) -> None:
    """The wheel (no dependencies: the layer below has them, at pyproject's pins), its console
    script, the Dockerfile's account, the Python package manifest of both layers."""
    stage = final_stage(STEPS_DOCKERFILE)
    site = rootfs / SITE
    with tempfile.TemporaryDirectory(prefix="faultflow-steps-wheel-") as scratch:
        pip_target(site, "--no-deps", str(_wheel(Path(scratch))))
    if "faultflow" not in _console_scripts(site):
        raise RuntimeError("faultflow: the steps wheel has no `faultflow` console script")
    _account_lines(rootfs, build.DEBIAN, stage)
    below = base_file(steps_deps_image(), MANIFEST).decode()
    (rootfs / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
    (rootfs / MANIFEST).write_text("".join(sorted((below + _freeze(site)).splitlines(keepends=True), key=str.lower)))


# ---- node agent -----------------------------------------------------------------------------------
def _copy(source: Path, destination: Path) -> None:
    """Docker's COPY of one source: a directory's contents into `destination`, a file to it."""
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def _node_agent(rootfs: Path) -> None:
    """The final stage's COPY lines, as written (build-context files, and the build stage's pip target
    made here the same way), and its account."""
    stage = final_stage(NODE_AGENT_DOCKERFILE)
    target, requirement = node_agent_pins()
    with tempfile.TemporaryDirectory(prefix="faultflow-node-agent-build-") as scratch:
        built = Path(scratch) / "usr" / "local" / "lib" / "python3" / "deps"  # pip_target's bin/ lands in scratch
        pip_target(built, requirement)
        for item in stage.copies:
            if item.stage and item.stage != "build":
                raise RuntimeError(f"faultflow: {NODE_AGENT_DOCKERFILE}: COPY --from={item.stage} is not reproduced here")
            for source in item.sources:
                if item.stage:
                    if not (source == target or source.startswith(target + "/")):
                        raise RuntimeError(f"faultflow: {NODE_AGENT_DOCKERFILE}: COPY --from=build {source} is outside {target}")
                    origin = built / source[len(target) :].lstrip("/")
                else:
                    origin = REPO / source
                into = item.destination.endswith("/") or len(item.sources) > 1
                destination = rootfs / item.destination.lstrip("/")
                _copy(origin, destination / Path(source).name if into and not origin.is_dir() else destination)
    _account_lines(rootfs, build.DEBIAN, stage)


def ensure_node_agent() -> build.Image:
    build.ensure_debian()
    image = node_agent_image()
    build.ensure(image, _node_agent)
    return image


# ---- shim -----------------------------------------------------------------------------------------
def _shim(rootfs: Path) -> None:
    stage = final_stage(SHIM_DOCKERFILE)
    with tempfile.TemporaryDirectory(prefix="faultflow-shim-build-") as scratch:
        src = Path(scratch) / "shim"
        shutil.copytree(REPO / "shim", src, ignore=shutil.ignore_patterns("build", "__pycache__"))
        build._run(["make", "-s", "-C", str(src)])
        libraries = sorted((src / "build").glob("*.so"))
        build._run(["strip", "--strip-unneeded", *map(str, libraries)])
        files = {lib.name: lib for lib in libraries} | {"install.sh": REPO / "images" / "shim" / "install.sh"}
        for name, source in files.items():
            destination = rootfs / stage.copy_to(name).lstrip("/")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, destination)
            destination.chmod(0o755)


def base_file(image: build.Image, path: str) -> bytes:
    """One file of a built image, from its top-most layer holding it (read from the OCI tar)."""
    import json

    with tarfile.open(image.tar) as outer:

        def blob(digest: str) -> bytes:
            handle = outer.extractfile(f"./blobs/sha256/{digest.split(':', 1)[1]}")
            assert handle is not None
            return handle.read()

        index = json.loads(outer.extractfile("./index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        for layer in reversed(manifest["layers"]):
            with tarfile.open(fileobj=outer.extractfile(f"./blobs/sha256/{layer['digest'].split(':', 1)[1]}"), mode="r|*") as inner:
                for member in inner:
                    if member.name.lstrip("./") == path and member.isfile():
                        return inner.extractfile(member).read()  # type: ignore[union-attr]
    raise FileNotFoundError(f"{path} in image {image.ref}")


def ensure_steps() -> build.Image:
    build.ensure_debian()
    build.ensure(steps_deps_image(), _steps_deps)
    image = steps_image()
    build.ensure(image, _steps)
    return image


def ensure_shim() -> build.Image:
    build.ensure_busybox()
    image = shim_image()
    build.ensure(image, _shim)
    return image
