from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.native_build import Native, build
from tests.shim.live import LiveConsumer, shim


@pytest.fixture(scope="session")
def native(tmp_path_factory) -> Native:
    return build(tmp_path_factory.mktemp("native"))


@dataclass
class Result:
    values: dict[str, str]
    stdout: str
    stderr: str
    returncode: int

    def code(self, op: str) -> int:
        return int(self.values[op])


def parse(stdout: str) -> dict[str, str]:
    values = {}
    for line in stdout.splitlines():
        op, _, rest = line.partition("=")
        values[op] = rest.split()[0] if rest else rest
        for extra in rest.split()[1:]:
            key, _, value = extra.partition("=")
            values[f"{op}.{key}"] = value
    return values


@pytest.fixture
def run_consumer(native):
    """Runs a fixture binary (or argv list) with the driver simulator on the library path."""

    def run(program, ops: list[str], *, preload: list[Path] | None = None, env: dict | None = None) -> Result:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "FAULTFLOW_", "SIM_"))}
        full_env["LD_LIBRARY_PATH"] = str(native.driver_dir)
        full_env.pop("LD_PRELOAD", None)
        if preload:
            full_env["LD_PRELOAD"] = " ".join(str(p) for p in preload)
        full_env.update(env or {})
        argv = [str(native.binary(program))] if isinstance(program, str) else list(program)
        done = subprocess.run(argv + ops, env=full_env, capture_output=True, text=True, timeout=60)
        return Result(parse(done.stdout), done.stdout, done.stderr, done.returncode)

    return run


@pytest.fixture
def toggle(tmp_path) -> Path:
    """A node toggle made by the CLI, switched off."""
    path = tmp_path / "toggle"
    shim("off", "--create", "--file", path)
    return path


@pytest.fixture
def live(native, toggle):
    """A CUDA consumer process under the shim that lives across toggles, its device initialised."""
    consumer = LiveConsumer(native, toggle)
    assert consumer.call("init") == 0 and consumer.call("device:0") == 0
    yield consumer
    consumer.close()
