"""`faultflow shim on|off|status`: the toggle record, and bad input that changes nothing."""

from __future__ import annotations

import json
import time

import pytest

from steps.errors import BadInput
from steps.gpu import toggle
from tests.cli import faultflow
from tests.steps.test_gpus import make_proc


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
    faultflow("shim", "off", "--create", "--file", str(path))
    inode = path.stat().st_ino
    faultflow("shim", "on", "--file", str(path), "--xid", "48")
    assert path.stat().st_ino == inode  # not replaced by a rename: the shim's mapping stays valid


def test_expired_record_reads_inactive():
    record = toggle.Toggle(on=True, xid=79, expires_ms=1000)
    assert record.expired(now=1000) and not record.active(now=1000) and record.active(now=999)
    # Issue 15 item 10: "never" (0) and an expiry further than a day away read as off, as the shim reads them.
    assert not toggle.Toggle(on=True, xid=79).active(now=10**12)
    assert not toggle.Toggle(on=True, xid=79, expires_ms=10**12 + toggle.MAX_DURATION_MS + 1).active(now=10**12)
    assert not toggle.Toggle(on=True, xid=79, expires_ms=10**12 + 1, gpu=4294967296).active(now=10**12)


def test_parse_tolerates_foreign_content():
    assert toggle.parse(b"1\n").on and toggle.parse(b"1\n").xid == 0
    assert not toggle.parse(b"").on
    assert toggle.parse(b"1 xid=abc gpu=x").gpu == toggle.ALL_GPUS


BAD_INPUTS = [
    (["on", "--xid", "0"], "unknown XID 0"),
    (["on", "--xid", "173"], "unknown XID 173"),
    (["on", "--xid", "-5"], "unknown XID -5"),
    (["on", "--xid", "abc"], "abc"),
    (["on", "--xid", "79", "--expires-in", "-1"], "--expires-in"),
    (["on", "--xid", "79", "--expires-in", "0"], "--expires-in"),
    (["on", "--xid", "79", "--expires-in", "nan"], "--expires-in"),
    # issue 15 item 10 / low items: bounds instead of wrap-around, overflow or "never"
    (["on", "--xid", "79", "--expires-in", "1e300"], "longer than 24h"),
    (["on", "--xid", "79", "--expires-in", "3.6e23"], "longer than 24h"),
    (["on", "--xid", "79", "--expires-in", "25h"], "longer than 24h"),
    (["on", "--xid", "79", "--gpu", "4294967296"], "--gpu must be"),
    (["on", "--xid", "79", "--gpu", "64"], "--gpu must be"),
    (["on", "--xid", "79", "--gpu", "-2"], "--gpu must be"),
    (["on", "--xid", "43", "--mode", "stall"], "--mode"),
    (["on", "--xid", "43", "--after-calls", "-1"], "--after-calls"),
    (["on", "--xid", "43", "--after-calls", "1000000001"], "--after-calls"),
    (["on", "--xid", "43", "--probability", "0"], "--probability"),
    (["on", "--xid", "43", "--probability", "1.01"], "--probability"),
    (["on", "--xid", "43", "--probability", "nan"], "--probability"),
    (["on", "--xid", "43", "--seed", "-1"], "--seed"),
    (["on", "--xid", "43", "--hang-ms", "10"], "--hang-ms needs --mode hang"),
    (["on", "--xid", "43", "--mode", "hang", "--hang-ms", "-5"], "--hang-ms"),
    (["on", "--xid", "43", "--bus", "3B:00.0"], "--bus must be a PCI bus id"),
    (["on"], "--xid"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS)
@pytest.mark.parametrize("existing", (True, False))
def test_bad_input_is_one_line_exit_2_and_touches_nothing(tmp_path, args, message, existing):
    path = tmp_path / "toggle"
    if existing:
        faultflow("shim", "off", "--create", "--file", str(path))
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
        (lambda tmp: "/proc/version", "not a toggle record"),  # root may open it: its content refuses it
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
    switch, xid, expires, gpu = raw[: toggle.V1_SIZE].split()[:4]  # what a v1 reader reads
    assert (switch, xid, gpu) == (b"1", b"xid=43", b"gpu=-1") and int(expires.partition(b"=")[2]) == state["expires_ms"]


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


# ---- issue 15 item 10 and the low items: the writer cannot be turned against the node ----


def test_on_without_expires_in_expires_in_30_minutes(tmp_path):
    path = tmp_path / "toggle"
    done = faultflow("shim", "on", "--file", str(path), "--xid", "79")
    assert done.returncode == 0, done.stderr
    left = json.loads(done.stdout)["expires_ms"] - time.time() * 1000
    assert 29 * 60_000 < left <= 30 * 60_000


def test_the_writer_never_follows_a_symbolic_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"0" + toggle.Toggle(on=False).body())  # even a toggle record behind the link
    link = tmp_path / "toggle"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "created-through-the-link")
    for argv in (["on", "--file", str(link), "--xid", "79"], ["off", "--file", str(link)], ["on", "--file", str(dangling), "--xid", "79"]):
        done = faultflow("shim", *argv)
        assert done.returncode == 2 and "symbolic link" in done.stderr and len(done.stderr.strip().splitlines()) == 1, argv
    assert victim.read_bytes() == b"0" + toggle.Toggle(on=False).body()
    assert not (tmp_path / "created-through-the-link").exists()  # no create through a dangling link


@pytest.mark.parametrize("content", (b"# my notes\n", b"x" * 300, b"1 xid=79" + b" " * 300))
def test_a_file_that_is_not_a_toggle_record_is_not_overwritten(tmp_path, content):
    path = tmp_path / "toggle"
    path.write_bytes(content)
    for argv in (["on", "--file", str(path), "--xid", "79"], ["off", "--file", str(path)]):
        done = faultflow("shim", *argv)
        assert done.returncode == 2 and "not a toggle record" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == content


def test_the_writer_may_overwrite_every_kind_of_toggle_record(tmp_path):
    """What the shim image's install.sh, a version-1 writer, the bench and an empty file leave behind."""
    for index, content in enumerate((
        b"", b"0" + b" " * 62 + b"\n", b"1 xid=95 expires_ms=0 gpu=-1".ljust(63) + b"\n", b"0" + toggle.Toggle(on=False).body(),
    )):  # fmt: skip
        path = tmp_path / f"toggle-{index}"
        path.write_bytes(content)
        done = faultflow("shim", "on", "--file", str(path), "--xid", "79")
        assert done.returncode == 0, (content, done.stderr)


def test_off_leaves_a_missing_file_missing(tmp_path):
    """The revert (cleanup, the janitor's toggle-off pod) succeeds where no toggle exists, and creates none."""
    path = tmp_path / "toggle"
    done = faultflow("shim", "off", "--file", str(path))
    assert done.returncode == 0 and "does not exist" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not path.exists()
    done = faultflow("shim", "off", "--create", "--file", str(path))
    assert done.returncode == 0 and not toggle.read(path).on and path.stat().st_size == toggle.TOGGLE_SIZE


def test_status_of_a_directory_is_bad_input(tmp_path):
    done = faultflow("shim", "status", "--file", str(tmp_path))
    assert done.returncode == 2 and "is a directory" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_library_writer_refuses_what_the_shim_would_read_as_off(tmp_path):
    path = tmp_path / "toggle"
    with pytest.raises(BadInput):
        toggle.write(path, toggle.Toggle(on=True, xid=79, gpu=4294967296))
    with pytest.raises(BadInput):
        toggle.write(path, toggle.Toggle(on=True, xid=79, expires_ms=360 * 10**24))
    assert not path.exists()


def test_host_gpu_is_named_by_its_bus_id(tmp_path):
    """cuda-only's toggle-on: the node's GPU by device minor, written as the bus id the shim matches."""
    proc = make_proc(tmp_path / "proc", [("0000:D8:00.0", 0), ("00000001:17:00.0", 3)])
    path = tmp_path / "toggle"
    done = faultflow("shim", "on", "--file", str(path), "--xid", "79", "--host-gpu", "3", "--proc-root", str(proc))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bus"] == "00000001:17:00.0" == toggle.read(path).bus
