"""`faultflow report compare`: reports the report step wrote for runs with different recovery, the table,
compare.json, the overlay plot, the gate's exit code, tolerances and bad input."""

from __future__ import annotations

import json
import struct

import pytest

from steps.report.compare import DEFAULT_TOLERANCES, Tolerance, parse_tolerances
from tests.cli import faultflow
from tests.steps.reports import build, write_evidence


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A recovers (requests 21-41 fail), run B recovers 14 s later (21-55 fail), C is A again."""
    root = tmp_path_factory.mktemp("runs")
    reports = {}
    for name, fail_until, n, restored in (("a", 41, 80, 70.0), ("b", 55, 80, 70.0), ("c", 41, 80, 70.0)):
        code, report = build(write_evidence(root / f"in-{name}", fail_until, n, restored), root / name)
        assert code == 0
        reports[name] = report
    return root, reports


def compare(*args: str):
    return faultflow("report", "compare", *args)


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_a_slower_recovery_is_flagged_and_fails_the_gate(runs, tmp_path):
    root, reports = runs
    ttr_a, ttr_b = reports["a"]["figures"]["time_to_recovery_s"], reports["b"]["figures"]["time_to_recovery_s"]
    assert ttr_b - ttr_a == pytest.approx(14, abs=0.1)
    done = compare(str(root / "a" / "report.json"), str(root / "b"), "--outputs-dir", str(tmp_path / "cmp"))
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "regression(s) beyond tolerance" in done.stderr and "B: time to recovery" in done.stderr
    table = done.stdout
    assert table.startswith("# report compare: REGRESSED")
    row = next(line for line in table.splitlines() if line.startswith("| time to recovery |"))
    assert row == f"| time to recovery | {ttr_a:.1f} s | {ttr_b:.1f} s | **{ttr_b - ttr_a:+.1f} s REGRESSED** | lower, 10 s |"
    avail = next(line for line in table.splitlines() if line.startswith("| availability during fault |"))
    assert "(regressed)" not in avail and "REGRESSED" in avail  # fewer successes while the fault lasted longer
    for label in ("detection", "time to first failure", "baseline p99", "fault p50", "resilience score", "checks passed"):
        assert any(line.startswith(f"| {label}") for line in table.splitlines()), label
    assert (tmp_path / "cmp" / "compare.md").read_text() == table
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert data["regressed"] is True and [r["label"] for r in data["runs"]] == ["A", "B"]
    recovery = next(f for f in data["figures"] if f["figure"] == "recovery")
    assert recovery["values"] == [ttr_a, ttr_b] and recovery["flags"] == [None, "regressed"]
    assert recovery["deltas"][1] == pytest.approx(ttr_b - ttr_a)
    score = next(f for f in data["figures"] if f["figure"] == "score")
    assert score["values"] == [reports["a"]["resilience_score"]["score"], reports["b"]["resilience_score"]["score"]]
    assert png_size(tmp_path / "cmp" / "compare.png") == (1200, 700)


def test_equal_runs_pass_the_gate(runs, tmp_path):
    root, _ = runs
    done = compare(str(root / "a"), str(root / "c" / "report.json"), "--outputs-dir", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# report compare: no regression beyond tolerance")
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["regressions"] == []


def test_an_improvement_passes_and_a_wider_tolerance_lets_the_slower_run_pass(runs, tmp_path):
    root, _ = runs
    better = compare(str(root / "b"), str(root / "a"), "--outputs-dir", str(tmp_path / "1"), "--no-plot")
    assert better.returncode == 0, better.stderr
    assert "(improved)" in next(line for line in better.stdout.splitlines() if line.startswith("| time to recovery |"))
    assert not (tmp_path / "1" / "compare.png").exists()
    wide = ["--tolerance", "recovery=20s", "--tolerance", "availability=50%", "--tolerance", "score=30"]
    done = compare(str(root / "a"), str(root / "b"), "--outputs-dir", str(tmp_path / "2"), "--no-plot", *wide)
    assert done.returncode == 0, done.stdout + done.stderr
    tight = compare(str(root / "a"), str(root / "c"), str(root / "b"), "--outputs-dir", str(tmp_path / "3"), "--no-plot")
    assert tight.returncode == 1 and "B: " not in tight.stderr and "C: time to recovery" in tight.stderr


def test_an_evidence_directory_is_compared_like_its_report(runs, tmp_path):
    root, _ = runs
    done = compare(str(root / "in-a"), str(root / "in-c"), "--outputs-dir", str(tmp_path / "cmp"), "--no-plot")
    assert done.returncode == 0, done.stderr
    assert "| A | scenario | in-a |" in done.stdout


def test_a_check_failing_only_in_the_later_run_regresses(runs, tmp_path):
    root, reports = runs
    broken = json.loads(json.dumps(reports["c"]))
    broken["checks"][-1] = {**broken["checks"][-1], "status": "failed", "reason": "x"}
    del broken["resilience_score"]  # an older report: the score is recomputed from it
    (tmp_path / "c.json").write_text(json.dumps(broken))
    done = compare(str(root / "a"), str(tmp_path / "c.json"), "--outputs-dir", str(tmp_path / "cmp"), "--no-plot")
    name = f"{broken['checks'][-1]['classname']}.{broken['checks'][-1]['name']}"
    assert done.returncode == 1 and f"B: check {name} failed" in done.stderr
    assert f"- `{name}`: A passed, B failed (B regressed)" in done.stdout


def test_tolerances_parse_with_units_and_percentages():
    chosen = parse_tolerances(["recovery=15s", "p99=25%", "availability=0.1"])
    assert chosen["recovery"] == Tolerance(15.0, False) and chosen["p99"] == Tolerance(0.25, True)
    assert chosen["availability"] == Tolerance(0.1, False) and chosen["detection"] == DEFAULT_TOLERANCES["detection"]


@pytest.mark.parametrize(
    "name,args",
    [
        ("one run only", ["{a}"]),
        ("no run", []),
        ("missing file", ["{a}", "{tmp}/nope.json"]),
        ("not a report", ["{a}", "{tmp}/other.json"]),
        ("not json", ["{a}", "{tmp}/text.json"]),
        ("empty directory", ["{a}", "{tmp}/empty"]),
        ("unknown tolerance", ["{a}", "{a}", "--tolerance", "speed=1"]),
        ("tolerance not a number", ["{a}", "{a}", "--tolerance", "recovery=soon"]),
        ("tolerance negative", ["{a}", "{a}", "--tolerance", "recovery=-1"]),
        ("outputs dir is a file", ["{a}", "{a}", "--outputs-dir", "{tmp}/other.json"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(runs, tmp_path, name, args):
    root, _ = runs
    (tmp_path / "other.json").write_text(json.dumps({"figures": {}}))
    (tmp_path / "text.json").write_text("hello\n")
    (tmp_path / "empty").mkdir()
    values = {"a": str(root / "a" / "report.json"), "tmp": str(tmp_path)}
    argv = [a.format(**values) for a in args]
    if "--outputs-dir" not in argv:
        argv += ["--outputs-dir", str(tmp_path / "out")]
    before = sorted(p.name for p in tmp_path.iterdir())
    done = compare(*argv)
    assert done.returncode == 2, (name, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faultflow: error:"), (name, done.stderr)
    assert done.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_run_the_fault_never_broke_recovered_in_zero_seconds(runs, tmp_path):
    root, reports = runs
    code, _ = build(write_evidence(tmp_path / "in", fail_until=None, n=80, restored=70.0), tmp_path / "clean")
    assert code == 0
    done = compare(str(tmp_path / "clean"), str(root / "a"), "--outputs-dir", str(tmp_path / "cmp"), "--no-plot")
    assert done.returncode == 1
    ttr = reports["a"]["figures"]["time_to_recovery_s"]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| time to recovery |"))
    assert row == f"| time to recovery | 0 s | {ttr:.1f} s | **{ttr:+.1f} s REGRESSED** | lower, 10 s |"
