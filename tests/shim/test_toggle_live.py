"""The node toggle flips a running process on and off without a restart, expires by itself, and can
target one GPU. The toggle is written by the real CLI (`faultflow shim on|off`), as the inject-xid and
cleanup steps do."""

from __future__ import annotations

import time

from steps.gpu.xids import lookup
from tests.shim.live import LiveConsumer, shim


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
