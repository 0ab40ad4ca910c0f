"""inject-xid end to end against a temp file / FIFO as the kernel log and a fake /proc."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from steps.gpu import kmsg, nvsentinel, toggle
from tests.steps.test_gpus import make_proc

FAULTFLOW = [sys.executable, "-c", "from steps.cli import run; run()"]


def run(*args):
    return subprocess.run(FAULTFLOW + list(args), capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})


def test_toggle_on_then_line_written(tmp_path):
    proc = make_proc(tmp_path / "proc", [("0000:D8:00.0", 0), ("0000:17:00.0", 1)])
    sink = tmp_path / "kmsg"
    sink.write_bytes(b"")
    tdir = tmp_path / "toggle"
    tdir.mkdir()
    result = run(
        "step",
        "inject-xid",
        "--xid",
        "48",
        "--gpu",
        "1",
        "--pid",
        "321",
        "--kmsg-path",
        str(sink),
        "--proc-root",
        str(proc),
        "--toggle-dir",
        str(tdir),
        "--expires-in",
        "10m",
        "--outputs-dir",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["event"] for line in result.stdout.splitlines()] == ["fault_injected", "fault_injected"]
    written = sink.read_bytes()
    _, message = kmsg.journald_message(written)
    found = nvsentinel.match_xid(message)
    assert (found.pci, found.xid, found.pid) == ("0000:17:00", 48, 321)
    state = toggle.read(tdir / "toggle")
    assert state.on and state.xid == 48 and state.expires_ms > 0
    assert (tmp_path / "out" / "pci").read_text() == "0000:17:00"
    assert int((tmp_path / "out" / "fault-time-ms").read_text()) <= state.expires_ms - 599_000


def test_sigterm_between_toggle_and_kmsg_switches_the_toggle_off(tmp_path):
    proc = make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)  # opening it for writing blocks until a reader comes: the step stops right after the toggle
    tdir = tmp_path / "toggle"
    tdir.mkdir()
    step = subprocess.Popen(
        FAULTFLOW + ["step", "inject-xid", "--xid", "79", "--kmsg-path", str(fifo), "--proc-root", str(proc), "--toggle-dir", str(tdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    first = step.stdout.readline()
    assert json.loads(first)["event"] == "fault_injected"
    assert toggle.read(tdir / "toggle").on
    step.send_signal(signal.SIGTERM)
    out, err = step.communicate(timeout=30)
    assert step.returncode == 3 and "SIGTERM" in err
    assert [json.loads(line)["event"] for line in out.splitlines()] == ["fault_cleared"]
    assert not toggle.read(tdir / "toggle").on


def test_without_pid_the_line_carries_the_documented_fixed_pid(tmp_path):
    """The node pod runs without hostPID, so the step's own pid means nothing on the node: the line
    carries the fixed default 0 (no user process), never the step's pid."""
    proc = make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])
    fifo = tmp_path / "kmsg"
    reader = _fifo_reader(fifo)  # a record per write, as /dev/kmsg keeps them (79 writes two)
    try:
        result = run("step", "inject-xid", "--xid", "79", "--kmsg-path", str(fifo), "--proc-root", str(proc))
        assert result.returncode == 0, result.stderr
        first = os.read(reader, 65536).splitlines(keepends=True)[0]
    finally:
        os.close(reader)
    _, message = kmsg.journald_message(first)
    assert nvsentinel.match_xid(message).pid == 0
    helped = run("step", "inject-xid", "--help")
    assert helped.returncode == 0
    text = " ".join(helped.stdout.split())
    assert "--pid" in text and "hostPID" in text and "default: 0" in text


def _fifo_reader(path: Path) -> int:
    os.mkfifo(path)
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK)


def test_expected_action_follows_the_nodes_gpu_metadata(tmp_path):
    proc = make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])
    metadata = tmp_path / "gpu_metadata.json"
    for present, action in ((False, "RESTART_VM"), (True, "COMPONENT_RESET")):
        if present:
            metadata.write_text(
                json.dumps({"driver_version": "570.148.08", "gpus": [{"uuid": "GPU-1", "pci_address": "00000000:17:00.0"}]})
            )
        sink = tmp_path / f"kmsg-{present}"
        sink.write_bytes(b"")
        out = tmp_path / f"out-{present}"
        result = run(
            "step",
            "inject-xid",
            "--xid",
            "48",
            "--kmsg-path",
            str(sink),
            "--proc-root",
            str(proc),
            "--gpu-metadata",
            str(metadata),
            "--outputs-dir",
            str(out),
        )
        assert result.returncode == 0, result.stderr
        assert (out / "expected-action").read_text() == action
        event = json.loads(result.stdout.splitlines()[-1])
        assert event["expected_action"] == action and event["gpu_metadata"] is present
        assert ("does not exist" in event["expected_why"]) is not present


def test_xid_79_writes_two_records_and_154_its_recovery_text(tmp_path):
    proc = make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])
    fifo = tmp_path / "kmsg"
    reader = _fifo_reader(fifo)
    try:
        result = run(
            "step",
            "inject-xid",
            "--xid",
            "79",
            "--kmsg-path",
            str(fifo),
            "--proc-root",
            str(proc),
            "--gpu-metadata",
            str(tmp_path / "none.json"),
        )
        assert result.returncode == 0, result.stderr
        records = os.read(reader, 65536).splitlines()
        assert [kmsg.journald_message(r + b"\n")[1].split(", ")[0] for r in records] == [
            "NVRM: Xid (PCI:0000:17:00): 79",
            "NVRM: GPU 0000:17:00.0: GPU has fallen off the bus.",
        ]
        result = run(
            "step",
            "inject-xid",
            "--xid",
            "154",
            "--recovery-action",
            "node-reboot",
            "--kmsg-path",
            str(fifo),
            "--proc-root",
            str(proc),
            "--gpu-metadata",
            str(tmp_path / "none.json"),
            "--outputs-dir",
            str(tmp_path / "o"),
        )
        assert result.returncode == 0, result.stderr
        assert os.read(reader, 65536).endswith(b"to 0x2 (Node Reboot Required)\n")
        assert (tmp_path / "o" / "expected-action").read_text() == "RESTART_BM"
    finally:
        os.close(reader)


def test_recovery_action_on_another_xid_is_bad_input(tmp_path):
    proc = make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])
    sink = tmp_path / "kmsg"
    sink.write_bytes(b"")
    result = run("step", "inject-xid", "--xid", "48", "--recovery-action", "none", "--kmsg-path", str(sink), "--proc-root", str(proc))
    assert result.returncode == 2 and sink.read_bytes() == b""


def test_the_toggle_names_the_xids_gpu_and_carries_the_trigger_options(tmp_path):
    """Issue 15 item 4 / issue 17: the toggle names the XID's GPU by its PCI bus id (the CUDA ordinal a
    worker sees is not the host minor), and inject-xid takes `shim on`'s trigger options."""
    proc = make_proc(tmp_path / "proc", [("0000:D8:00.0", 0), ("00000001:17:00.0", 1)])
    sink = tmp_path / "kmsg"
    sink.write_bytes(b"")
    tdir = tmp_path / "toggle"
    tdir.mkdir()
    result = run(
        "step", "inject-xid", "--xid", "43", "--gpu", "1", "--kmsg-path", str(sink), "--proc-root", str(proc),
        "--toggle-dir", str(tdir), "--mode", "hang", "--hang-ms", "1500", "--after-calls", "3", "--probability", "0.5",
        "--seed", "7",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    state = toggle.read(tdir / "toggle")
    assert (state.bus, state.gpu, state.mode, state.hang_ms, state.after_calls, state.probability, state.seed) == (
        "00000001:17:00.0", toggle.ALL_GPUS, "hang", 1500, 3, 0.5, 7,
    )  # fmt: skip
    assert 29 * 60_000 < state.expires_ms - state.at_ms <= 30 * 60_000  # the default expiry
