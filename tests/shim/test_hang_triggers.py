"""Hangs and triggers in the toggle record: calls that block instead of failing, faults that trip after
N calls or with a seeded probability, and version-1 records still read. The toggle is written by the
real CLI (`faultflow shim on ...`); the consumer is the driver-API program over the driver simulator."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

import pytest

from steps.gpu import toggle as toggle_record
from steps.gpu.xids import lookup
from tests.shim.live import LiveConsumer, shim

# clock_nanosleep, where a hung call waits (glibc's nanosleep is clock_nanosleep)
CLOCK_NANOSLEEP = {"x86_64": 230, "aarch64": 115}[platform.machine()]


def send(consumer: LiveConsumer, op: str) -> None:
    consumer.process.stdin.write(op + "\n")
    consumer.process.stdin.flush()


def answer(consumer: LiveConsumer, op: str) -> int:
    name, _, value = consumer.process.stdout.readline().strip().partition("=")
    assert name == op
    return int(value)


def wait_until_blocked(pid: int) -> None:
    """Until the process sleeps in the shim's hang loop (its only thread in clock_nanosleep): a call
    that was not held would have answered and gone back to reading stdin instead."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        syscall = Path(f"/proc/{pid}/syscall").read_text().split()
        if syscall and syscall[0] == str(CLOCK_NANOSLEEP):
            return
        time.sleep(0.01)  # polling another process's state: nothing to wait on
    raise AssertionError("the call did not block")


@pytest.mark.parametrize("op", ("sync", "launch", "launch_ptsz", "memcpy_ptds"))
def test_hang_blocks_gpu_calls_until_the_toggle_clears(live, toggle, op):
    shim("on", "--file", toggle, "--xid", 43, "--mode", "hang")
    assert live.call("alloc") == 0  # allocation does not wait on the GPU: not held
    send(live, op)
    wait_until_blocked(live.process.pid)
    shim("off", "--file", toggle)
    assert answer(live, op) == 0  # resumed: the real call ran, like a process continued after SIGSTOP
    assert "stalling XID 43" in live.close()


def test_a_hang_replaced_by_an_error_fault_fails_the_held_call(live, toggle):
    shim("on", "--file", toggle, "--xid", 43, "--mode", "hang")
    send(live, "sync")
    wait_until_blocked(live.process.pid)
    shim("on", "--file", toggle, "--xid", 79)  # no off in between: the GPU went from hung to lost
    assert answer(live, "sync") == lookup(79).effect.call_error


def test_hang_bound_fails_the_call_with_the_xids_error(live, toggle):
    shim("on", "--file", toggle, "--xid", 43, "--mode", "hang", "--hang-ms", 300)
    start = time.monotonic()
    assert live.call("sync") == lookup(43).effect.call_error  # 702: the watchdog gave up on the work
    assert time.monotonic() - start >= 0.3


def test_hang_trips_after_calls(live, toggle):
    shim("on", "--file", toggle, "--xid", 109, "--mode", "hang", "--after-calls", 2, "--hang-ms", 100)
    assert [live.call("sync") for _ in range(3)] == [0, 0, lookup(109).effect.call_error]


def test_after_calls_counts_targeted_calls_per_injection(live, toggle):
    shim("on", "--file", toggle, "--xid", 48, "--after-calls", 3)
    error = lookup(48).effect.call_error
    assert [live.call("alloc") for _ in range(6)] == [0, 0, 0, error, error, error]  # sticky once tripped
    shim("off", "--file", toggle)
    shim("on", "--file", toggle, "--xid", 48, "--after-calls", 3)  # a new injection counts afresh
    assert [live.call("alloc") for _ in range(4)] == [0, 0, 0, error]


def test_after_calls_counts_only_calls_on_the_target_gpu(live, toggle):
    shim("on", "--file", toggle, "--xid", 48, "--after-calls", 2, "--gpu", 1)
    assert [live.call("alloc") for _ in range(3)] == [0, 0, 0]  # the current context is on device 0
    assert live.call("device:1") == 0  # cuDeviceGet(1) and cuCtxCreate(1): the two targeted calls that pass
    assert live.call("alloc") == lookup(48).effect.call_error


def run_allocs(native, toggle: Path, calls: int) -> list[int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "FAULTFLOW_", "SIM_"))}
    env.update(LD_LIBRARY_PATH=str(native.driver_dir), LD_PRELOAD=str(native.shim), FAULTFLOW_TOGGLE_FILE=str(toggle))
    done = subprocess.run([str(native.binary("driver_consumer_proc")), "init", *["alloc"] * calls], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return [int(line.partition("=")[2]) for line in done.stdout.splitlines()[1:]]


def test_probability_is_a_seeded_sequence(native, toggle):
    error = lookup(74).effect.call_error
    shim("on", "--file", toggle, "--xid", 74, "--probability", 0.3, "--seed", 7)
    first = run_allocs(native, toggle, 200)
    assert first == run_allocs(native, toggle, 200)  # the same draws in every process
    assert set(first) == {0, error}
    assert 30 <= first.count(error) <= 90  # about 60 of 200 (fixed by the seed, not by chance)
    shim("on", "--file", toggle, "--xid", 74, "--probability", 0.3, "--seed", 8)
    assert run_allocs(native, toggle, 200) != first
    shim("on", "--file", toggle, "--xid", 74, "--probability", 0.3, "--seed", 7, "--after-calls", 50)
    gated = run_allocs(native, toggle, 200)
    assert gated[:50] == [0] * 50 and error in gated[50:]


def test_version_1_record_is_still_read(native, live, toggle):
    """A toggle written by a version-1 writer (64 bytes, three fields): error mode on every call; the
    CLI then rewrites it in place as version 2. Its "never expires" (expires_ms=0) reads as off since
    issue 15: a forgotten fault must switch itself off."""
    inode = toggle.stat().st_ino
    expires_ms = int(time.time() * 1000) + 600_000
    fd = os.open(toggle, os.O_WRONLY)
    os.ftruncate(fd, 0)  # the consumer makes no call until the record is back (a call meanwhile would pass)
    os.pwrite(fd, f"1 xid=95 expires_ms={expires_ms} gpu=-1".encode().ljust(63) + b"\n", 0)
    os.close(fd)
    assert toggle_record.read(toggle).version == 1
    assert live.call("alloc") == lookup(95).effect.call_error
    fd = os.open(toggle, os.O_WRONLY)
    os.pwrite(fd, b"1 xid=95 expires_ms=0 gpu=-1".ljust(63) + b"\n", 0)
    os.close(fd)
    assert live.call("alloc") == 0
    shim("off", "--file", toggle)
    assert toggle.stat().st_ino == inode and toggle.stat().st_size == toggle_record.TOGGLE_SIZE
    assert live.call("alloc") == 0
