"""PromQL probes (`--check 'promql:…'`): the check string's grammar, bad input, and a Prometheus that
does not answer (a failed check with its reason, never a crash). Probes against a real Prometheus:
tests/lab/test_lab_prometheus.py."""

from __future__ import annotations

import json

import pytest

from lab.processes import free_port
from steps.errors import BadInput
from steps.report.probes import Op, Probe, parse_check
from tests.cli import faultflow
from tests.steps.reports import write_evidence


@pytest.mark.parametrize(
    "text,expected",
    [
        ("promql:up < 1", Probe("up", Op.LT, 1.0)),
        ("promql:up<=1", Probe("up", Op.LE, 1.0)),
        ("promql: sum(up) >  2 ", Probe("sum(up)", Op.GT, 2.0)),
        ("promql:x >= -0.5", Probe("x", Op.GE, -0.5)),
        ("promql:x == 1e3", Probe("x", Op.EQ, 1000.0)),
        ("promql:x != .25", Probe("x", Op.NE, 0.25)),
        # The expression's own comparisons and strings stay in it: ours is the last one, before a number.
        ('promql:sum(up{job="nvsentinel"} == 1) >= 1', Probe('sum(up{job="nvsentinel"} == 1)', Op.GE, 1.0)),
        ("promql:count(x > 3) < 2", Probe("count(x > 3)", Op.LT, 2.0)),
        ("promql:rate(x_total[5m]) <= 0.1", Probe("rate(x_total[5m])", Op.LE, 0.1)),
    ],
)
def test_a_check_parses(text, expected):
    assert parse_check(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "up < 1",  # no kind
        "prom:up < 1",  # unknown kind
        "promql:up",  # no comparison
        "promql:up <",  # no value
        "promql:< 1",  # no expression
        "promql:up < one",  # not a number
        "promql:up < nan",
        "promql:up < inf",
        "promql:up =< 1",  # not an operator
        "promql:up >== 1",
        "promql:up <> 1",
        "promql:up = 1",
        "promql:sum(up < 1",  # unbalanced
        "promql:up{job='a' < 1",
        "promql:up\n< 1",
    ],
)
def test_a_malformed_check_is_bad_input(text):
    with pytest.raises(BadInput) as raised:
        parse_check(text)
    assert "\n" not in str(raised.value) or "\\n" in str(raised.value)


def test_a_probe_name_is_the_normalised_check():
    assert parse_check("promql: sum(up)>=1.0").name == "sum(up) >= 1"


@pytest.mark.parametrize(
    "args",
    [
        ["--check", "promql:up", "--prometheus-url", "http://127.0.0.1:9"],
        ["--check", "nvsentinel:up > 1", "--prometheus-url", "http://127.0.0.1:9"],
        ["--check", "promql:up > 1"],  # no --prometheus-url to ask
        ["--check", "promql:up > 1", "--prometheus-url", "http://127.0.0.1:9", "--probe-time", "tomorrow"],
    ],
)
def test_report_refuses_a_bad_check_in_one_line_and_writes_nothing(tmp_path, args):
    evidence = write_evidence(tmp_path / "in", fail_until=41)
    out = tmp_path / "out"
    done = faultflow("step", "report", "--input", str(evidence), "--outputs-dir", str(out), *args)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("faultflow: error:")
    assert not out.exists()


def test_a_prometheus_that_does_not_answer_fails_the_probe_with_the_reason(tmp_path):
    evidence = write_evidence(tmp_path / "in", fail_until=41)
    dead = f"http://127.0.0.1:{free_port()}"
    done = faultflow(
        "step", "report", "--input", str(evidence), "--outputs-dir", str(tmp_path / "out"), "--window", "5", "--no-plot",
        "--prometheus-url", dead, "--check", "promql:sum(up) >= 1",
    )  # fmt: skip
    assert done.returncode == 1 and "promql.sum(up) >= 1" in done.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    probe = next(c for c in report["checks"] if c["classname"] == "promql")
    assert probe["status"] == "failed" and probe["reason"].startswith(f"no answer: {dead} did not answer")
    assert report["verdict"] == "failed"
    assert "FAIL `promql.sum(up) >= 1`: no answer:" in (tmp_path / "out" / "summary.md").read_text()
