"""gate / recover / load as Argo runs them: the real `faultflow step` commands against the simulator."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from lab.inference_simulator import Behaviour, Rule
from tests.steps.inference_fixtures import FAULTFLOW, events, faultflow, read_jsonl, simulator, wait_until  # noqa: F401


def test_gate_passes_and_records_the_baseline(simulator, tmp_path):
    done = faultflow(
        "step", "verify-inference", "--mode", "gate", "--url", simulator.url, "--requests", "8", "--rate", "200", "--outputs", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    assert events(done.stdout)[-1]["event"] == "check_passed"
    records = read_jsonl(tmp_path / "records.jsonl")
    assert [r["seq"] for r in records] == list(range(1, 9))
    assert {r["phase"] for r in records} == {"baseline"} and {r["outcome"] for r in records} == {"ok"}
    summary = json.loads((tmp_path / "gate.json").read_text())
    assert summary["passed"] and summary["requests"] == 8 and summary["success_rate"] == 1.0
    assert (tmp_path / "passed").read_text() == "true\n"
    assert json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])["event"] == "check_passed"


def test_gate_fails_below_threshold_with_exit_1_and_one_line(simulator, tmp_path):
    simulator.rules = [Rule(Behaviour.ERROR, from_request=7)]  # 6 of 8 succeed: 75% < 90%
    done = faultflow(
        "step",
        "verify-inference",
        "--mode",
        "gate",
        "--url",
        simulator.url,
        "--requests",
        "8",
        "--rate",
        "200",
        "--model",
        "m",
        "--outputs",
        str(tmp_path),
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "6/8" in done.stderr
    last = events(done.stdout)[-1]
    assert last["event"] == "check_failed" and last["outcomes"] == {"http_5xx": 2, "ok": 6}
    assert (tmp_path / "passed").read_text() == "false\n"


def test_recover_waits_for_a_full_window_exactly(simulator, tmp_path):
    # Requests 1-6 fail; a window of 5 at threshold 1.0 is first full of successes at request 11.
    simulator.rules = [Rule(Behaviour.ERROR, until_request=7)]
    done = faultflow(
        "step",
        "verify-inference",
        "--mode",
        "recover",
        "--url",
        simulator.url,
        "--model",
        "m",
        "--window",
        "5",
        "--threshold",
        "1",
        "--rate",
        "500",
        "--deadline",
        "20",
        "--outputs",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    records = read_jsonl(tmp_path / "records.jsonl")
    assert [r["outcome"] for r in records] == ["http_5xx"] * 6 + ["ok"] * 5
    summary = json.loads((tmp_path / "recover.json").read_text())
    assert summary["recovered_at"] == records[-1]["end"]
    recovered = [e for e in events(done.stdout) if e["event"] == "inference_recovered"]
    assert recovered and recovered[0]["time_recovered"] == records[-1]["end"]


def test_recover_tolerates_failures_within_the_threshold(simulator, tmp_path):
    simulator.rules = [Rule(Behaviour.DROP, from_request=3, until_request=4)]  # one failure in 10 = 90%
    done = faultflow(
        "step",
        "verify-inference",
        "--mode",
        "recover",
        "--url",
        simulator.url,
        "--model",
        "m",
        "--window",
        "10",
        "--threshold",
        "0.9",
        "--rate",
        "500",
        "--outputs",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert len(read_jsonl(tmp_path / "records.jsonl")) == 10


def test_recover_after_a_wall_clock_outage(simulator, tmp_path):
    until = time.time() + 0.4
    simulator.rules = [Rule(Behaviour.ERROR, until_time=until)]
    done = faultflow(
        "step",
        "verify-inference",
        "--mode",
        "recover",
        "--url",
        simulator.url,
        "--model",
        "m",
        "--window",
        "3",
        "--rate",
        "100",
        "--deadline",
        "20",
        "--outputs",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "recover.json").read_text())
    assert summary["recovered_at"] >= until
    assert summary["outcomes"]["http_5xx"] >= 1


def test_recover_gives_up_at_the_deadline(simulator, tmp_path):
    simulator.rules = [Rule(Behaviour.ERROR)]
    started = time.monotonic()
    done = faultflow(
        "step",
        "verify-inference",
        "--mode",
        "recover",
        "--url",
        simulator.url,
        "--model",
        "m",
        "--rate",
        "50",
        "--deadline",
        "0.5",
        "--outputs",
        str(tmp_path),
    )
    assert done.returncode == 1
    assert "did not recover within 0.5s" in done.stderr
    assert time.monotonic() - started < 15
    assert json.loads((tmp_path / "recover.json").read_text())["passed"] is False


def _start_load(url: str, tmp_path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [FAULTFLOW, "step", "load", "--url", url, "--model", "m", "--outputs", str(tmp_path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_load_streams_records_and_stops_on_the_stop_file(simulator, tmp_path):
    stop = tmp_path / "stop"
    load = _start_load(simulator.url, tmp_path / "out", "--rate", "200", "--concurrency", "4", "--stop-file", str(stop))
    try:
        # Records reach the file while the load runs (streamed, not held until the end).
        wait_until(lambda: _lines(tmp_path / "out" / "records.jsonl") >= 50, 20, "streamed records")
        stop.touch()
        out, err = load.communicate(timeout=20)
    finally:
        load.kill()
    assert load.returncode == 0, err
    stopped = events(out)[-1]
    assert stopped["event"] == "load_stopped" and stopped["reason"] == "stop file"
    records = read_jsonl(tmp_path / "out" / "records.jsonl")
    summary = json.loads((tmp_path / "out" / "load.json").read_text())
    assert len(records) == summary["dispatched"] == sum(summary["outcomes"].values())
    assert sorted(r["seq"] for r in records) == list(range(1, len(records) + 1))


def test_load_flushes_everything_on_sigterm_and_records_in_flight_as_cancelled(simulator, tmp_path):
    simulator.rules = [Rule(Behaviour.HANG, from_request=21)]
    load = _start_load(simulator.url, tmp_path, "--rate", "100", "--concurrency", "3", "--grace", "0.2", "--timeout", "60")
    try:
        wait_until(lambda: simulator.completions >= 23, 20, "three hanging requests")
        load.send_signal(signal.SIGTERM)
        out, err = load.communicate(timeout=20)
    finally:
        load.kill()
    assert load.returncode == 0, err
    assert events(out)[-1]["reason"] == "signal SIGTERM"
    records = read_jsonl(tmp_path / "records.jsonl")
    outcomes = [r["outcome"] for r in sorted(records, key=lambda r: r["seq"])]
    assert outcomes == ["ok"] * 20 + ["cancelled"] * 3


def test_load_stops_after_its_duration(simulator, tmp_path):
    done = faultflow("step", "load", "--url", simulator.url, "--rate", "40", "--duration", "0.5", "--outputs", str(tmp_path))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "load.json").read_text())
    assert summary["stop_reason"] == "duration"
    assert 5 <= summary["dispatched"] <= 21  # 40/s for 0.5 s, with start-up slack but never a burst
