"""The step image (images/steps/Dockerfile) holds only what runs in a step container: `steps`, no lab/,
no workflows/, no hera. No Docker here, so the test does what the Dockerfile's build stage does with
the files its COPY lines name: builds the wheel with pip (the pinned setuptools, offline), reads it,
installs it alone and runs `faultflow --help` from it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "images" / "steps" / "Dockerfile"


def build_stage_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY in the first (build) stage, taken from the build context."""
    copies, stage = [], 0
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()  # COPY and FROM lines here are plain words (no quotes, no continuations)
        if words and words[0].upper() == "FROM":
            stage += 1
        elif words and words[0].upper() == "COPY" and stage == 1:
            assert not any(w.startswith("--") for w in words[1:]), line  # a plain copy from the context
            copies.append((words[1:-1], words[-1]))
    return copies


def test_the_build_stage_copies_no_lab_and_no_workflows() -> None:
    sources = [s for sources, _ in build_stage_copies() for s in sources]
    assert "steps/" in sources
    assert [s for s in sources if Path(s).parts[0] in ("lab", "workflows", "tests", "bench")] == []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("step-image")
    src = base / "src"  # the build stage's WORKDIR
    src.mkdir()
    for sources, destination in build_stage_copies():
        for source in sources:  # COPY's rules: a directory's contents to the destination, a file into a `…/` destination
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, src / destination, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
            elif destination.endswith("/"):
                (src / destination).mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, src / destination / Path(source).name)
            else:
                shutil.copy(ROOT / source, src / destination)
    wheels = base / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--wheel-dir",
            str(wheels),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = wheels.glob("faultflow-*.whl")
    return built


def test_the_wheel_holds_steps_alone(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {Path(n).parts[0] for n in names if n.endswith(".py")}
    assert packages == {"steps"}
    assert any(n.startswith("steps/gpu/data/") and n.endswith(".json") for n in names)  # package-data
    assert "steps/commands/inject_xid.py" in names


def test_the_wheel_requires_no_hera(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    unconditional = [r for r in requires if "extra ==" not in r]
    assert any("click" in r for r in unconditional)
    assert [r for r in unconditional if "hera" in r or "pytest" in r or "aiohttp" in r] == []


def test_faultflow_runs_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    """Installed without the repository: the step commands are there, the commands of the packages the
    image does not ship (render, lab, run) are not offered, and --help does not fail on them."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # -S: no site processing, so the editable install's finder (which maps lab and workflows to this
    # repository) is not loaded; the run-time dependencies come from this venv's site-packages, after the wheel.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}

    def faultflow(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-S", "-c", "from steps.cli import run; run()", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            "import steps, importlib.util as u; print(steps.__file__); print(u.find_spec('lab'), u.find_spec('workflows'))",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert where[0].startswith(str(target))
    assert where[1] == "None None"  # (hera is in this venv, but not among the wheel's requirements: above)
    top = faultflow("--help")
    assert top.returncode == 0, top.stderr
    listed = {line.split()[0] for line in top.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == {"step", "xids", "shim", "faults", "report", "halt"}
    steps_help = faultflow("step", "--help")
    assert steps_help.returncode == 0, steps_help.stderr
    assert "inject-xid" in steps_help.stdout
    unknown = faultflow("render")
    assert unknown.returncode == 2
    assert "No such command 'render'" in unknown.stderr
