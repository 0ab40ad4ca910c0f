"""Issue 15 item 10: the node toggle cannot crash a shimmed process or be defeated by its owner.
Truncating the mapped file, replacing it by rename, a GPU id that would wrap to 0 and an expiry that
never comes each leave the process running and the fault where the record's bounds say it is. The
consumer is the driver-API program over the driver simulator, under the real shim."""

from __future__ import annotations

import os
import time

import pytest

from steps.gpu import toggle as toggle_record
from steps.gpu.xids import lookup
from tests.shim.live import LiveConsumer, shim

ECC = lookup(48).effect.call_error


def until(consumer: LiveConsumer, op: str, expected: int) -> None:
    """Calls `op` until it returns `expected` (the shim re-checks the file at most every 100 ms)."""
    deadline = time.monotonic() + 10
    while (result := consumer.call(op)) != expected:
        assert time.monotonic() < deadline, f"{op} still returns {result}, not {expected}"


def write_raw(path, record: bytes) -> None:
    """A record written in place, as a hand-made or foreign writer would (the CLI refuses these values)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, record.ljust(toggle_record.TOGGLE_SIZE - 1) + b"\n", 0)
    finally:
        os.close(fd)


@pytest.mark.parametrize("switched_on", (True, False))
def test_truncating_the_mapped_toggle_does_not_kill_the_process(live, toggle, switched_on):
    if switched_on:
        shim("on", "--file", toggle, "--xid", 48)
        assert live.call("alloc") == ECC
    os.truncate(toggle, 0)  # what `> toggle` does first: the mapped page is now past the end of the file
    assert live.call("alloc") == 0  # alive (no SIGBUS), and an empty toggle is off
    assert live.call("sync") == 0
    shim("on", "--file", toggle, "--xid", 48)  # the writer fills the empty file in place
    until(live, "alloc", ECC)  # the process maps the file again and follows it
    shim("off", "--file", toggle)
    until(live, "alloc", 0)
    assert live.process.poll() is None


def test_a_toggle_replaced_by_rename_is_followed(live, toggle, tmp_path):
    shim("on", "--file", toggle, "--xid", 48)
    assert live.call("alloc") == ECC
    replacement = tmp_path / "toggle.new"
    shim("off", "--create", "--file", replacement)  # a whole record, switched off ...
    os.rename(replacement, toggle)  # ... put in place by rename: the process still maps the old inode
    until(live, "alloc", 0)  # the fault can be switched off through the new file
    shim("on", "--file", toggle, "--xid", 48)  # and the process now maps the new file
    until(live, "alloc", ECC)


def on_record(gpu: str, expires_ms: str) -> bytes:
    return f"1 xid=48 expires_ms={expires_ms} gpu={gpu} v=2 at=1 mode=error after=0 prob=1 seed=0 hang_ms=0 bus=-".encode()


def soon() -> str:
    return str(int(time.time() * 1000) + 600_000)


def test_a_gpu_id_past_the_bound_does_not_wrap_to_device_0(live, toggle):
    write_raw(toggle, on_record("0", soon()))
    assert live.call("alloc") == ECC  # the record itself is a valid fault on device 0 ...
    for gpu in ("4294967296", "64", "-2", "99999999999999999999999", "x", "0x1"):
        write_raw(toggle, on_record(gpu, soon()))
        assert live.call("alloc") == 0, gpu  # ... but these ids are not device 0: the record reads as off


@pytest.mark.parametrize("expires_ms", ("360000000000000000000000000", "0", str(2**63 - 1)))
def test_an_expiry_never_reached_reads_as_off(live, toggle, expires_ms):
    write_raw(toggle, on_record("-1", soon()))
    assert live.call("alloc") == ECC
    write_raw(toggle, on_record("-1", expires_ms))
    assert live.call("alloc") == 0


def test_an_expiry_further_than_a_day_reads_as_off(live, toggle):
    write_raw(toggle, on_record("-1", str(int(time.time() * 1000) + 25 * 3600 * 1000)))
    assert live.call("alloc") == 0
    write_raw(toggle, on_record("-1", str(int(time.time() * 1000) + 23 * 3600 * 1000)))
    assert live.call("alloc") == ECC
