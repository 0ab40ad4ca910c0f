"""The node toggle flips a running process on and off without a restart, expires by itself, and can
target one GPU. The toggle is written by the real CLI (`faultflow shim on|off`), as the inject-xid and
cleanup steps do."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from steps.gpu.xids import lookup
from tests.cli import faultflow


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


@pytest.fixture
def toggle(tmp_path):
    path = tmp_path / "toggle"
    shim("off", "--create", "--file", str(path))
    return path


@pytest.fixture
def live(native, toggle):
    consumer = LiveConsumer(native, toggle)
    assert consumer.call("init") == 0
    assert consumer.call("device:0") == 0
    yield consumer
    consumer.close()


def shim(*args: str) -> None:
    done = faultflow("shim", *args)
    assert done.returncode == 0, done.stderr


def test_toggle_flips_a_running_process(live, toggle):
    assert live.call("alloc") == 0
    shim("on", "--file", str(toggle), "--xid", "48")
    assert live.call("alloc") == lookup(48).effect.call_error
    assert live.call("launch_ptsz") == lookup(48).effect.call_error
    shim("off", "--file", str(toggle))
    assert live.call("alloc") == 0
    shim("on", "--file", str(toggle), "--xid", "79")  # another XID, same process
    assert live.call("alloc") == lookup(79).effect.call_error
    shim("off", "--file", str(toggle))
    assert live.call("launch") == 0


def test_expiry_switches_the_fault_off(live, toggle):
    expires_in = 2.0  # long enough for the CLI to exit and the consumer to call on a loaded machine
    switched_on = time.monotonic()
    shim("on", "--file", str(toggle), "--xid", "95", "--expires-in", str(expires_in))
    assert live.call("alloc") == lookup(95).effect.call_error
    deadline = switched_on + 10
    while live.call("alloc") != 0:
        assert time.monotonic() < deadline, "the fault did not expire"
    assert time.monotonic() - switched_on >= expires_in * 0.9  # not before its time (clock granularity: ms)
    assert live.call("sync") == 0


def test_fault_targets_one_gpu(live, toggle):
    shim("on", "--file", str(toggle), "--xid", "94", "--gpu", "1")
    assert live.call("alloc") == 0  # the current context is on device 0
    assert live.call("device:1") == lookup(94).effect.call_error  # naming device 1 fails
    shim("off", "--file", str(toggle))
    assert live.call("device:1") == 0  # now the current context is on device 1
    shim("on", "--file", str(toggle), "--xid", "94", "--gpu", "1")
    assert live.call("alloc") == lookup(94).effect.call_error
    assert live.call("device:0") == 0


def test_injections_are_reported_once_per_xid(native, toggle):
    consumer = LiveConsumer(native, toggle)
    consumer.call("init")
    shim("on", "--file", str(toggle), "--xid", "74")
    for _ in range(5):
        consumer.call("alloc")
    stderr = consumer.close()
    assert stderr.count("injecting XID 74") == 1
