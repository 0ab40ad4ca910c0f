"""What the shim's toggle tests share: the CLI that writes the toggle, and a CUDA consumer process
that lives across toggles."""

from __future__ import annotations

import os
import subprocess

from tests.cli import faultflow


def shim(*args) -> None:
    """`faultflow shim …` (arguments as strings), which must succeed."""
    done = faultflow("shim", *map(str, args))
    assert done.returncode == 0, done.stderr


class LiveConsumer:
    """A driver_consumer_proc that reads operations from stdin, so one process lives across toggles."""

    def __init__(self, native, toggle, env: dict | None = None):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "FAULTFLOW_", "SIM_"))}
        base.update(
            LD_LIBRARY_PATH=str(native.driver_dir),
            LD_PRELOAD=str(native.shim),
            FAULTFLOW_TOGGLE_FILE=str(toggle),
            **(env or {}),
        )
        env = base
        self.process = subprocess.Popen(
            [str(native.binary("driver_consumer_proc")), "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    def call(self, op: str) -> int:
        self.process.stdin.write(op + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        name, _, value = line.strip().partition("=")
        assert name == op, line
        return int(value.split()[0])

    def close(self) -> str:
        self.process.stdin.close()
        self.process.wait(timeout=10)
        return self.process.stderr.read()
