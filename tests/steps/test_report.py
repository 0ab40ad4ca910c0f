"""`faultflow step report`: journal, JUnit, PNG, Markdown, Prometheus metrics, verdict and exit code."""

from __future__ import annotations

import json
import math
import struct
import subprocess

import pytest
from junitparser import Failure, JUnitXml, Skipped
from prometheus_client.parser import text_string_to_metric_families

from lab.inference_simulator import Behaviour, Rule
from steps.events import Event, emit
from tests.steps.inference_fixtures import FAULTFLOW, events, faultflow, read_jsonl, simulator, wait_until  # noqa: F401
from tests.steps.run_fixtures import DETECTED, FAILED_LATENCY, FAULT, RESTORED_AFTER_RECOVERY, T0, latency, write_run

RECOVERY_S = 46 + latency(46) - FAULT


def report(inputs, out, *extra):
    args = ["step", "report", "--outputs", str(out), "--scenario", "gpu-fault", "--window", "5"]
    for path in inputs:
        args += ["--input", str(path)]
    return faultflow(*args, *extra)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_passing_run_writes_every_output(tmp_path):
    done = report([write_run(tmp_path / "in")], tmp_path / "out", "--run-id", "gpu-fault-abc12", "--max-recovery-seconds", "60")
    assert done.returncode == 0, done.stderr
    assert events(done.stdout)[-1] == {**events(done.stdout)[-1], "event": "report_written", "verdict": "passed"}
    out = tmp_path / "out"
    journal = json.loads((out / "report.json").read_text())
    assert journal["verdict"] == "passed" and journal["run_id"] == "gpu-fault-abc12"
    f = journal["figures"]
    assert f["time_to_recovery_s"] == pytest.approx(RECOVERY_S)
    assert f["time_to_first_failure_s"] == pytest.approx(21 + FAILED_LATENCY - FAULT)
    assert f["detection_s"] == pytest.approx(DETECTED - FAULT)
    assert [p["name"] for p in journal["phases"]] == ["baseline", "fault", "remediation", "recovery"]
    marked = [e["event"] for e in journal["timeline"] if "label" in e]
    assert marked == [
        "fault_injected",
        "first_failed_request",
        "xid_detected",
        "node_cordoned",
        "pods_evicted",
        "first_success_after_failure",
        "recovered",
        "dgd_restored",
        "fault_cleared",
    ]
    assert journal["timeline"][0]["t"] == FAULT  # origin is the first request at T0

    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    suite = next(iter(xml))
    cases = {f"{c.classname}.{c.name}": c for c in suite}
    assert set(cases) == {
        "gpu-fault.inference.records_present",
        "gpu-fault.inference.baseline_success_rate",
        "gpu-fault.scenario.fault_injected",
        "gpu-fault.inference.recovered",
        "gpu-fault.inference.recovery_time",
    }
    assert all(c.is_passed for c in cases.values()) and suite.failures == 0 and suite.tests == 5

    assert png_size(out / "timeline.png") == (1200, 700)
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# gpu-fault: PASSED") and f"{RECOVERY_S:.1f} s" in summary

    assert float((out / "metrics" / "recovery_seconds").read_text()) == pytest.approx(RECOVERY_S, abs=1e-6)
    assert float((out / "metrics" / "availability_during_fault").read_text()) == pytest.approx(6 / 27, abs=1e-6)
    assert (out / "metrics" / "verdict").read_text() == "passed\n"
    families = {f.name: f for f in text_string_to_metric_families((out / "metrics.prom").read_text())}
    sample = families["faultflow_detection_seconds"].samples[0]
    assert sample.labels == {"scenario": "gpu-fault"} and sample.value == pytest.approx(DETECTED - FAULT)
    assert families["faultflow_run_passed"].samples[0].value == 1.0


def test_slow_recovery_fails_the_verdict_with_exit_1(tmp_path):
    done = report([write_run(tmp_path / "in")], tmp_path / "out", "--max-recovery-seconds", "10", "--min-availability", "0.5")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "inference.recovery_time" in done.stderr
    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "out" / "junit.xml"))))
    failed = {c.name: c.result[0] for c in suite if c.result and isinstance(c.result[0], Failure)}
    assert set(failed) == {"recovery_time", "availability_during_fault"}
    assert f"recovered after {RECOVERY_S:.1f}s, limit 10s" == failed["recovery_time"].message
    assert (tmp_path / "out" / "metrics" / "run_passed").read_text() == "0.0\n"


def test_step_checks_become_testcases_and_a_retried_step_counts_its_last_word(tmp_path):
    extra = [
        Event("wait-for-cordon", "check_failed", {"check": "node_cordoned_within_window", "reason": "timeout"}, T0 + 29),
        Event("wait-for-cordon", "check_passed", {"check": "node_cordoned_within_window"}, T0 + 29.5),
        Event("cleanup-dgd", "check_failed", {"check": "dgd_restored_exactly", "reason": "spec differs: replicas"}, T0 + 41),
        Event("cleanup-dgd", "step_finished", {"exit_code": 1}, T0 + 41.1),
    ]
    done = report([write_run(tmp_path / "in", extra)], tmp_path / "out")
    assert done.returncode == 1
    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "out" / "junit.xml"))))
    status = {f"{c.classname}.{c.name}": (c.result[0].message if c.result else "passed") for c in suite}
    assert status["gpu-fault.wait-for-cordon.node_cordoned_within_window"] == "passed"
    assert status["gpu-fault.cleanup-dgd.dgd_restored_exactly"] == "spec differs: replicas"
    assert status["gpu-fault.cleanup-dgd.exit_code"] == "cleanup-dgd exited 1"


def test_no_fault_and_no_records_fail_and_unmeasured_figures_are_nan(tmp_path):
    (tmp_path / "in").mkdir()
    emit("preflight", "run_started", stream=(tmp_path / "in" / "events.jsonl").open("w"))
    done = report([tmp_path / "in"], tmp_path / "out")
    assert done.returncode == 1
    journal = json.loads((tmp_path / "out" / "report.json").read_text())
    failed = {c["name"] for c in journal["checks"] if c["status"] == "failed"}
    assert failed == {"records_present", "fault_injected"}
    assert math.isnan(float((tmp_path / "out" / "metrics" / "recovery_seconds").read_text()))
    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "out" / "junit.xml"))))
    assert any(isinstance(c.result[0], Skipped) for c in suite if c.result)
    assert png_size(tmp_path / "out" / "timeline.png") == (1200, 700)


def test_never_recovered_run_fails(tmp_path):
    folder = write_run(tmp_path / "in")
    lines = (folder / "records.jsonl").read_text().splitlines()
    # Requests from 44 s on fail too: inference never comes back (neither before our restore at 50 s nor after).
    broken = [json.loads(line) for line in lines]
    for r in broken[44:]:
        r["outcome"] = "timeout"
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in broken))
    done = report([folder], tmp_path / "out")
    assert done.returncode == 1
    journal = json.loads((tmp_path / "out" / "report.json").read_text())
    assert journal["figures"]["recovered"] is None
    assert "did not recover" in next(c for c in journal["checks"] if c["name"] == "recovered")["reason"]
    assert (tmp_path / "out" / "metrics" / "recovered").read_text() == "0.0\n"


def test_inputs_mixed_duplicated_and_noisy_are_read_once(tmp_path):
    folder = write_run(tmp_path / "in")
    log = tmp_path / "in" / "pod.log"
    nan_record = '{"seq": 99, "start": NaN, "end": 1, "latency": 1, "outcome": "ok"}'
    nan_event = '{"time": NaN, "step": "x", "event": "fault_injected"}'
    log.write_text("starting\n" + (folder / "events.jsonl").read_text() + "{half a line\n" + nan_record + "\n" + nan_event + "\n")
    done = report([folder, folder / "records.jsonl"], tmp_path / "out")
    assert done.returncode == 0, done.stderr
    inputs = json.loads((tmp_path / "out" / "report.json").read_text())["inputs"]
    assert inputs["requests"] == 60 and inputs["events"] == 6
    assert inputs["duplicate_files"] == 1 and inputs["duplicate_events"] == 6 and inputs["ignored_lines"] == 4


def test_a_real_load_run_end_to_end(simulator, tmp_path):
    """load against the simulator, a fault that makes requests 31-60 fail, events from 'steps', report."""
    simulator.rules = [Rule(Behaviour.ERROR, from_request=31, until_request=61)]
    stop = tmp_path / "stop"
    load = subprocess.Popen(
        [
            FAULTFLOW,
            "step",
            "load",
            "--url",
            simulator.url,
            "--rate",
            "200",
            "--concurrency",
            "1",
            "--stop-file",
            str(stop),
            "--outputs",
            str(tmp_path / "load"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    steps_log = (tmp_path / "steps.jsonl").open("w")
    try:
        wait_until(lambda: simulator.completions >= 25, 20, "baseline traffic")
        emit("inject-xid", "fault_injected", stream=steps_log, xid=79)
        wait_until(lambda: simulator.completions >= 45, 20, "failing traffic")
        emit("wait-for-cordon", "node_cordoned", stream=steps_log)
        wait_until(lambda: simulator.completions >= 61, 20, "the fault to pass")
        emit("cleanup-dgd", "fault_cleared", stream=steps_log)
        wait_until(lambda: simulator.completions >= 90, 20, "recovered traffic")
        stop.touch()
        load.communicate(timeout=20)
    finally:
        load.kill()
        steps_log.close()
    assert load.returncode == 0
    done = report([tmp_path / "load", tmp_path / "steps.jsonl"], tmp_path / "out")
    assert done.returncode == 0, done.stderr
    journal = json.loads((tmp_path / "out" / "report.json").read_text())
    records = sorted(read_jsonl(tmp_path / "load" / "records.jsonl"), key=lambda r: r["seq"])
    fault = next(e for e in journal["timeline"] if e["event"] == "fault_injected")["time"]
    first_failed = records[30]
    assert [r["outcome"] for r in records[30:60]] == ["http_5xx"] * 30 and records[29]["outcome"] == "ok"
    assert journal["figures"]["first_failure"] == first_failed["end"]
    assert journal["figures"]["time_to_first_failure_s"] == pytest.approx(first_failed["end"] - fault)
    # Concurrency 1: completion order is request order; 5 successes after request 60 → request 65.
    assert journal["figures"]["recovered"] == records[64]["end"]
    assert journal["figures"]["time_to_recovery_s"] == pytest.approx(records[64]["end"] - fault)
    assert sum(p["requests"] for p in journal["phases"]) == len(records)


def test_two_faults_injected_at_once_are_told_apart_in_the_summary_and_merged_on_the_plot():
    from types import SimpleNamespace

    from steps.report.journal import timeline
    from steps.report.plot import _grouped_events

    both = [
        Event("inject-xid", "fault_injected", {"kind": "cuda", "xid": 79}, T0 + FAULT),
        Event("inject-xid", "fault_injected", {"kind": "xid", "xid": 79}, T0 + FAULT),
    ]
    no_requests = SimpleNamespace(first_failure=None, first_success_after_failure=None, recovered=None)
    entries = timeline(both, no_requests, T0)
    assert [e["label"] for e in entries] == ["fault injected: cuda", "fault injected: xid 79"]
    assert [(t, labels) for t, labels, _ in _grouped_events(entries, duration=60.0)] == [(FAULT, ["fault injected"])]


def _records_failing(folder, indices, outcome="http_5xx"):
    lines = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    for i in indices:
        lines[i]["outcome"] = outcome
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_item14_recovery_excludes_our_cleanup_rollout_which_is_reported_apart(tmp_path):
    """Issue 15 item 14: our own restore (at 50 s) makes requests 51-53 fail. The fault's recovery time
    is the same as without that disturbance; the rollout is `cleanup_disruption_seconds`."""
    folder = write_run(tmp_path / "in")
    _records_failing(folder, range(51, 54))
    done = report([folder], tmp_path / "out", "--max-recovery-seconds", "60")
    assert done.returncode == 0, done.stderr
    f = json.loads((tmp_path / "out" / "report.json").read_text())["figures"]
    assert f["time_to_recovery_s"] == pytest.approx(RECOVERY_S)
    assert f["availability_during_fault"] == pytest.approx(6 / 27)
    assert f["restore_time"] == T0 + RESTORED_AFTER_RECOVERY
    # Sustained again at the end of request 58 (54..58: a window of 5 successes).
    assert f["cleanup_disruption_seconds"] == pytest.approx(58 + latency(58) - RESTORED_AFTER_RECOVERY)
    assert f["cleanup_failed_requests"] == 3
    written = float((tmp_path / "out" / "metrics" / "cleanup_disruption_seconds").read_text())
    assert written == pytest.approx(f["cleanup_disruption_seconds"], abs=1e-6)
    assert "our cleanup's rollout" in (tmp_path / "out" / "summary.md").read_text()


def test_item14_a_run_without_disturbance_reports_zero_and_one_broken_by_cleanup_fails(tmp_path):
    quiet = report([write_run(tmp_path / "a")], tmp_path / "out-a")
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads((tmp_path / "out-a" / "report.json").read_text())["figures"]["cleanup_disruption_seconds"] == 0.0
    folder = write_run(tmp_path / "b")
    _records_failing(folder, range(51, 60), "timeout")  # our restore broke inference for good
    broken = report([folder], tmp_path / "out-b")
    assert broken.returncode == 1
    journal = json.loads((tmp_path / "out-b" / "report.json").read_text())
    assert journal["figures"]["time_to_recovery_s"] == pytest.approx(RECOVERY_S)  # the fault's recovery stands
    assert journal["figures"]["cleanup_disruption_seconds"] is None
    assert "below" in next(c for c in journal["checks"] if c["name"] == "recovered")["reason"]
