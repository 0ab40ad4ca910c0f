"""The lab's real Prometheus (Debian's package) scraping the NVSentinel simulator's metrics, and the
report reading NVSentinel's MTTR through Prometheus' HTTP API — no cluster, no fake Prometheus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.nvsentinel_metrics import DEDUP_STORE_AND_ANALYSE, EVICTION_DURATION, QUARANTINE_DURATION, NvsentinelMetrics
from lab.processes import free_port, wait_until
from lab.prometheus import VERSION, LabPrometheus, binary, config_yaml, stop_recorded
from steps.report.prometheus import PrometheusApi
from tests.cli import run_cli
from tests.steps.reports import write_evidence
from tests.steps.run_fixtures import T0


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """An NVSentinel metrics endpoint and a Prometheus scraping it every second."""
    metrics = NvsentinelMetrics()
    prometheus = LabPrometheus(tmp_path_factory.mktemp("prometheus")).start({"nvsentinel": metrics.serve()})
    try:
        yield metrics, prometheus
    finally:
        prometheus.stop()
        metrics.stop()


def value(api: PrometheusApi, promql: str) -> float | None:
    samples = api.query(f"sum({promql})", time.time())
    return samples[0].value if samples else None


def wait_value(api: PrometheusApi, promql: str, expected: float) -> None:
    wait_until(lambda: True if value(api, promql) == expected else None, what=f"{promql} == {expected}", timeout_s=30, interval_s=0.2)


def events_file(path: Path, t0: float, quarantined: bool = True) -> Path:
    lines = [{"time": t0, "step": "inject-xid", "event": "fault_injected", "kind": "xid", "xid": 79, "node": "gpu-0"}]
    if quarantined:
        lines += [
            {"time": t0 + 1.6, "step": "wait-for-cordon", "event": "node_cordoned", "node": "gpu-0", "xid": 79, "latency_ms": 1500},
            {"time": t0 + 4.1, "step": "wait-for-cordon", "event": "pods_evicted", "node": "gpu-0", "after_ms": 4000},
        ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_the_package_is_debians_pinned_one_and_the_config_scrapes_every_second():
    out = subprocess.run([str(binary()), "--version"], capture_output=True, text=True, check=True)
    assert VERSION in out.stdout + out.stderr
    config = config_yaml({"nvsentinel": "127.0.0.1:1"})
    assert "scrape_interval: 1s" in config and "127.0.0.1:1" in config


def test_the_report_sets_nvsentinels_durations_in_the_run_window_beside_ours(scraped, tmp_path: Path):
    metrics, prometheus = scraped
    api = PrometheusApi(prometheus.url)
    # A quarantine before the run: Prometheus has it, the run's window must not count it.
    metrics.quarantine_duration.observe(9.0)
    wait_value(api, f"{QUARANTINE_DURATION}_count", 1)
    t0 = time.time()
    metrics.quarantine_duration.observe(0.4)
    metrics.eviction_duration.observe(2.5)
    metrics.dedup.labels(check="SysLogsXIDError", err_code="48").inc()  # another error code's repeat
    wait_value(api, f"{QUARANTINE_DURATION}_count", 2)
    wait_value(api, f"{EVICTION_DURATION}_count", 1)
    wait_value(api, DEDUP_STORE_AND_ANALYSE, 1)

    out = tmp_path / "out"
    args = ("step", "report", "--input", str(events_file(tmp_path / "events.jsonl", t0)), "--outputs-dir", str(out), "--no-plot")
    result = run_cli(*args, "--prometheus-url", prometheus.url + "/")
    assert result.returncode == 1, result.stderr  # no inference records: the verdict is not this test's concern
    mttr = json.loads((out / "report.json").read_text())["nvsentinel_mttr"]
    assert mttr["status"] == "available" and mttr["node"] == "gpu-0" and mttr["prometheus_url"] == prometheus.url
    assert mttr["quarantine"]["observations"] == 1 and mttr["quarantine"]["nvsentinel_s"] == pytest.approx(0.4)
    assert mttr["quarantine"]["ours_s"] == pytest.approx(1.5)
    assert mttr["eviction"]["observations"] == 1 and mttr["eviction"]["nvsentinel_s"] == pytest.approx(2.5)
    assert mttr["eviction"]["ours_s"] == pytest.approx(2.5)
    assert mttr["deduplicated"] == 0  # XID 48's repeat is not this run's
    summary = (out / "summary.md").read_text()
    assert "- quarantine: NVSentinel 0.40 s (health event generated → quarantine written" in summary
    assert "vs ours 1.50 s (fault injected → quarantine seen" in summary

    # A repeat of XID 79 NVSentinel suppressed: counted; the node was quarantined, so it was not ours.
    metrics.dedup.labels(check="SysLogsXIDError", err_code="79").inc()
    wait_value(api, DEDUP_STORE_AND_ANALYSE, 2)
    run_cli(*args, "--prometheus-url", prometheus.url)
    report = json.loads((out / "report.json").read_text())
    assert report["nvsentinel_mttr"]["deduplicated"] == 1 and report["nvsentinel"] is None
    assert "deduplicated: 1 repeat(s) stored without action" in (out / "summary.md").read_text()
    # The same repeat in a run whose node NVSentinel left alone: that run's XID was the repeat.
    quiet = events_file(tmp_path / "quiet.jsonl", t0, quarantined=False)
    run_cli("step", "report", "--input", str(quiet), "--outputs-dir", str(out), "--no-plot", "--prometheus-url", prometheus.url)
    report = json.loads((out / "report.json").read_text())
    assert report["nvsentinel"]["outcome"] == "deduplicated"
    assert "while node gpu-0 was not quarantined" in report["nvsentinel"]["deduplicated_evidence"]


def test_a_prometheus_without_nvsentinels_series_or_none_at_all_leaves_the_verdict_alone(tmp_path: Path):
    empty = LabPrometheus(tmp_path / "empty").start({})
    try:
        events = events_file(tmp_path / "events.jsonl", time.time())
        base = ("step", "report", "--input", str(events), "--no-plot")
        without = run_cli(*base, "--outputs-dir", str(tmp_path / "without"))
        no_series = run_cli(*base, "--outputs-dir", str(tmp_path / "no-series"), "--prometheus-url", empty.url)
    finally:
        empty.stop()
    dead = f"http://127.0.0.1:{free_port()}"
    no_answer = run_cli(*base, "--outputs-dir", str(tmp_path / "no-answer"), "--prometheus-url", dead)
    assert without.returncode == no_series.returncode == no_answer.returncode == 1
    assert json.loads((tmp_path / "without" / "report.json").read_text())["nvsentinel_mttr"] is None
    summary = (tmp_path / "no-series" / "summary.md").read_text()
    assert f"nvsentinel_mttr: unavailable (no series {QUARANTINE_DURATION}_count at " in summary
    assert f"nvsentinel_mttr: unavailable ({dead} did not answer" in (tmp_path / "no-answer" / "summary.md").read_text()
    assert "faultflow report: nvsentinel_mttr: unavailable (" in no_answer.stderr


def test_a_prometheus_url_that_is_not_http_is_refused_in_one_line(tmp_path: Path):
    events = events_file(tmp_path / "events.jsonl", time.time())
    for bad in ("ftp://prometheus:9090", "prometheus:9090", "http://prometheus:9090/?q=1", "http://prometheus:99999"):
        result = run_cli("step", "report", "--input", str(events), "--outputs-dir", str(tmp_path / "out"), "--prometheus-url", bad)
        assert result.returncode == 2, (bad, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "--prometheus-url" in result.stderr
        assert not (tmp_path / "out").exists()


def test_a_prometheus_left_behind_is_stopped_by_its_recorded_pid_only(tmp_path: Path):
    left = LabPrometheus(tmp_path / "left").start({})
    pid = left.process.popen.pid
    record = json.loads(left.pid_file.read_text())
    assert record["pid"] == pid
    assert stop_recorded(tmp_path / "left")
    left.process.popen.wait(10)  # reaped by us, its parent
    assert not stop_recorded(tmp_path / "left")  # nothing recorded any more
    # A record whose pid now names another process (here: this test's own) is left alone.
    (tmp_path / "left" / "prometheus.pid").write_text(json.dumps({"pid": os.getpid(), "start_time": "1"}))
    assert not stop_recorded(tmp_path / "left")


def test_no_apt_get_means_one_line_and_exit_2(tmp_path: Path):
    env = {**os.environ, "FAULTFLOW_CACHE": str(tmp_path / "cache"), "PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "lab.prometheus"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"faultflow: the lab's Prometheus comes from Debian's package prometheus={VERSION}; no apt-get here"


@pytest.fixture
def own_scraped(tmp_path: Path):
    """A metrics endpoint and Prometheus of the test's own: its counters are nobody else's."""
    metrics = NvsentinelMetrics()
    prometheus = LabPrometheus(tmp_path / "prometheus").start({"nvsentinel": metrics.serve()})
    try:
        yield metrics, prometheus
    finally:
        prometheus.stop()
        metrics.stop()


def test_promql_probes_are_checks_of_the_verdict_against_the_real_query_engine(own_scraped, tmp_path: Path):
    """`--check 'promql:…'`: a true probe passes, a false one fails the verdict (exit 1); no series,
    several series and the evaluation time are each told apart."""
    metrics, prometheus = own_scraped
    api = PrometheusApi(prometheus.url)
    metrics.dedup.labels(check="SysLogsXIDError", err_code="119").inc()
    wait_value(api, f'{DEDUP_STORE_AND_ANALYSE}{{err_code="119"}}', 1)
    # A passing run (inference recovered) that ended a moment ago, so only the probes decide.
    evidence = write_evidence(tmp_path / "in", fail_until=41, shift=time.time() - T0 - 61)

    def report(out: str, *checks: str, probe_time: str = "report"):
        argv = ["step", "report", "--input", str(evidence), "--outputs-dir", str(tmp_path / out), "--window", "5", "--no-plot"]
        argv += ["--prometheus-url", prometheus.url, "--probe-time", probe_time]
        for check in checks:
            argv += ["--check", check]
        result = run_cli(*argv)
        return result, {
            c["name"]: c for c in json.loads((tmp_path / out / "report.json").read_text())["checks"] if c["classname"] == "promql"
        }

    true_probes = (
        'promql:sum(up{job="nvsentinel"}) >= 1',
        f'promql:sum({DEDUP_STORE_AND_ANALYSE}{{err_code="119"}}) == 1',
        "promql:scalar(sum(up)) > 0",  # a scalar result is one number too
    )
    passed, checks = report("true", *true_probes)
    assert passed.returncode == 0, passed.stderr
    assert [c["status"] for c in checks.values()] == ["passed"] * 3

    failed, checks = report("false", 'promql:sum(up{job="nvsentinel"}) == 0', *true_probes[:1])
    assert failed.returncode == 1 and 'promql.sum(up{job="nvsentinel"}) == 0' in failed.stderr
    probe = checks['sum(up{job="nvsentinel"}) == 0']
    assert probe["status"] == "failed" and probe["reason"] == 'sum(up{job="nvsentinel"}) = 1, expected == 0'

    metrics.dedup.labels(check="SysLogsXIDError", err_code="120").inc()  # after the run ended
    several = f'{DEDUP_STORE_AND_ANALYSE}{{err_code=~"119|120"}}'
    wait_until(lambda: True if len(api.query(several, time.time())) == 2 else None, what="two series", timeout_s=30, interval_s=0.2)
    odd = ("promql:faultflow_no_such_metric > 0", f"promql:{several} > 0")
    failed, checks = report("odd", *odd)
    assert failed.returncode == 1
    assert checks["faultflow_no_such_metric > 0"]["reason"].startswith("'faultflow_no_such_metric' returned no series at ")
    assert checks[f"{several} > 0"]["reason"].startswith(f"{several!r} returned 2 series (")
    assert checks[f"{several} > 0"]["reason"].endswith("aggregate it to one, e.g. sum(...)")

    # Evaluated at the run's end, XID 120's repeat (counted after it) is not there yet.
    late = f'promql:sum({DEDUP_STORE_AND_ANALYSE}{{err_code="120"}}) >= 1'
    now, _ = report("now", late)
    at_end, checks = report("end", late, probe_time="run-end")
    assert now.returncode == 0 and at_end.returncode == 1
    assert "returned no series at" in next(iter(checks.values()))["reason"]
