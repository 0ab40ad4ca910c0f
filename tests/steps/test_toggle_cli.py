"""`faultflow shim on|off|status`: the toggle record, and bad input that changes nothing."""

from __future__ import annotations

import json
import time

import pytest

from steps.gpu import toggle
from tests.cli import faultflow


def test_on_off_status_round_trip(tmp_path):
    path = tmp_path / "toggle"
    done = faultflow("shim", "on", "--file", str(path), "--xid", "79", "--expires-in", "60", "--gpu", "2")
    assert done.returncode == 0, done.stderr
    raw = path.read_bytes()
    assert len(raw) == toggle.TOGGLE_SIZE and raw.startswith(b"1 xid=79 ") and raw.endswith(b"\n")
    state = json.loads(done.stdout)
    assert state["on"] and state["active"] and state["xid"] == 79 and state["gpu"] == 2
    assert 55_000 < state["expires_ms"] - time.time() * 1000 <= 60_000

    done = faultflow("shim", "off", "--file", str(path))
    assert done.returncode == 0
    assert path.read_bytes()[:1] == b"0" and len(path.read_bytes()) == toggle.TOGGLE_SIZE
    assert json.loads(faultflow("shim", "status", "--file", str(path)).stdout)["on"] is False


def test_rewrites_in_place_so_mapped_readers_see_it(tmp_path):
    path = tmp_path / "toggle"
    faultflow("shim", "off", "--file", str(path))
    inode = path.stat().st_ino
    faultflow("shim", "on", "--file", str(path), "--xid", "48")
    assert path.stat().st_ino == inode  # not replaced by a rename: the shim's mapping stays valid


def test_expired_record_reads_inactive():
    record = toggle.Toggle(on=True, xid=79, expires_ms=1000)
    assert record.expired(now_ms=1000) and not record.active(now_ms=1000)
    assert toggle.Toggle(on=True, xid=79).active(now_ms=10**15)  # 0: never expires


def test_parse_tolerates_foreign_content():
    assert toggle.parse(b"1\n").on and toggle.parse(b"1\n").xid == 0
    assert not toggle.parse(b"").on
    assert toggle.parse(b"1 xid=abc gpu=x").gpu == toggle.ALL_GPUS


BAD_INPUTS = [
    (["on", "--xid", "0"], "unknown XID 0"),
    (["on", "--xid", "173"], "unknown XID 173"),
    (["on", "--xid", "-5"], "unknown XID -5"),
    (["on", "--xid", "abc"], "abc"),
    (["on", "--xid", "79", "--expires-in", "-1"], "--expires-in must be a positive"),
    (["on", "--xid", "79", "--expires-in", "0"], "--expires-in must be a positive"),
    (["on", "--xid", "79", "--expires-in", "nan"], "--expires-in must be a positive"),
    (["on", "--xid", "79", "--gpu", "-2"], "--gpu must be"),
    (["on", "--xid", "43", "--mode", "stall"], "--mode must be one of error, hang"),
    (["on", "--xid", "43", "--after-calls", "-1"], "--after-calls must be"),
    (["on", "--xid", "43", "--probability", "0"], "--probability must be in (0, 1]"),
    (["on", "--xid", "43", "--probability", "1.01"], "--probability must be in (0, 1]"),
    (["on", "--xid", "43", "--probability", "nan"], "--probability must be in (0, 1]"),
    (["on", "--xid", "43", "--seed", "-1"], "--seed must be"),
    (["on", "--xid", "43", "--hang-ms", "10"], "--hang-ms needs --mode hang"),
    (["on", "--xid", "43", "--mode", "hang", "--hang-ms", "-5"], "--hang-ms must be"),
    (["on", "--xid", "43", "--bus", "3B:00.0"], "--bus must be a PCI bus id"),
    (["on"], "--xid"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
@pytest.mark.parametrize("existing", (True, False))
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tmp_path, args, message, existing):
    path = tmp_path / "toggle"
    if existing:
        faultflow("shim", "off", "--file", str(path))
    before = path.read_bytes() if existing else None
    done = faultflow("shim", args[0], "--file", str(path), *args[1:])
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and message in done.stderr
    assert (path.read_bytes() if path.exists() else None) == before


@pytest.mark.parametrize(
    "make_path,message",
    [
        (lambda tmp: tmp / "missing-dir" / "toggle", "does not exist"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: "/proc/version", "not writable"),
        (lambda tmp: "/sys/faultflow-toggle", "not writable"),
    ],
)
def test_unwritable_path_is_exit_2(tmp_path, make_path, message):
    target = make_path(tmp_path)
    done = faultflow("shim", "on", "--file", str(target), "--xid", "79")
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_triggers_round_trip_through_the_version_2_record(tmp_path):
    path = tmp_path / "toggle"
    done = faultflow("shim", "on", "--file", str(path), "--xid", "43", "--mode", "hang", "--after-calls", "5",
                     "--probability", "0.125", "--seed", "42", "--hang-ms", "9000", "--bus", "00000000:3B:00.0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert {k: state[k] for k in ("version", "mode", "after_calls", "probability", "seed", "hang_ms", "bus")} == {
        "version": 2, "mode": "hang", "after_calls": 5, "probability": 0.125, "seed": 42, "hang_ms": 9000,
        "bus": "00000000:3B:00.0",
    }  # fmt: skip
    assert abs(state["at_ms"] - time.time() * 1000) < 60_000  # switch-on time: names the injection
    raw = path.read_bytes()
    assert len(raw) == toggle.TOGGLE_SIZE
    assert raw[: toggle.V1_SIZE].split()[:4] == [b"1", b"xid=43", b"expires_ms=0", b"gpu=-1"]  # what a v1 reader reads


def test_every_switch_on_is_a_new_injection(tmp_path):
    path = tmp_path / "toggle"
    toggle.write(path, toggle.Toggle(on=True, xid=48))
    first = toggle.read(path).at_ms
    toggle.write(path, toggle.Toggle(on=False))
    toggle.write(path, toggle.Toggle(on=True, xid=48, at_ms=first + 1))
    assert toggle.read(path).at_ms == first + 1 and first > 0


def test_version_1_record_parses_with_defaults():
    record = toggle.parse(b"1 xid=79 expires_ms=0 gpu=2".ljust(63) + b"\n")
    assert (record.version, record.xid, record.gpu, record.mode, record.after_calls, record.probability) == (
        1, 79, 2, "error", 0, 1.0,
    )  # fmt: skip
