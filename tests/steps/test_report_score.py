"""The resilience score (steps.report.score): weights, the not-applicable components, the caps, and that
it depends on report.json alone."""

from __future__ import annotations

import copy

import pytest

from steps.events import Event
from steps.report.score import DETECTION_REFERENCE_S, FAILED_CHECK_CAP, RECOVERY_REFERENCE_S, WEIGHTS, resilience_score
from tests.steps.reports import build, write_evidence
from tests.steps.run_fixtures import DETECTED, FAULT, T0


def components(score: dict) -> dict[str, dict]:
    return {c["name"]: c for c in score["components"]}


def test_weights_sum_to_100():
    assert sum(WEIGHTS.values()) == 100


def test_a_recovered_run_scores_each_component_by_its_documented_rule(tmp_path):
    code, report = build(write_evidence(tmp_path / "in", fail_until=41), tmp_path / "out")
    assert code == 0
    score = report["resilience_score"]
    f = report["figures"]
    c = components(score)
    assert c["availability"]["points"] == pytest.approx(40 * f["availability_during_fault"])
    ttr = f["time_to_recovery_s"]
    assert c["recovery"]["points"] == pytest.approx(30 * RECOVERY_REFERENCE_S / (RECOVERY_REFERENCE_S + ttr))
    assert c["detection"]["points"] == pytest.approx(10 * DETECTION_REFERENCE_S / (DETECTION_REFERENCE_S + DETECTED - FAULT))
    phases = {p["name"]: p for p in report["phases"]}
    worst = max(phases["fault"]["latency"]["p99"], phases["remediation"]["latency"]["p99"])
    assert c["latency"]["points"] == pytest.approx(10 * phases["baseline"]["latency"]["p99"] / worst)
    assert c["checks"]["points"] == 10 and all(s["points"] == 2.5 for s in score["checks"])
    assert score["cap"] is None
    assert score["score"] == round(sum(x["points"] for x in c.values()), 1)
    # Deterministic from report.json: recomputed later (e.g. by `report compare`), the same.
    assert resilience_score(copy.deepcopy({k: v for k, v in report.items() if k != "resilience_score"})).as_dict() == score
    assert f"| resilience score (0–100) | {score['score']:.1f} (availability" in (tmp_path / "out" / "summary.md").read_text()
    assert float((tmp_path / "out" / "metrics" / "resilience_score").read_text()) == score["score"]


def test_a_slower_recovery_scores_lower_and_the_limit_sets_the_reference(tmp_path):
    _, fast = build(write_evidence(tmp_path / "fast", fail_until=41), tmp_path / "o1")
    _, slow = build(write_evidence(tmp_path / "slow", fail_until=55, n=80, restored=70), tmp_path / "o2")
    assert components(slow["resilience_score"])["recovery"]["points"] < components(fast["resilience_score"])["recovery"]["points"]
    assert slow["resilience_score"]["score"] < fast["resilience_score"]["score"]
    _, limited = build(write_evidence(tmp_path / "lim", fail_until=41), tmp_path / "o3", "--max-recovery-seconds", "60")
    ttr = limited["figures"]["time_to_recovery_s"]
    assert components(limited["resilience_score"])["recovery"]["points"] == pytest.approx(30 * 60 / (60 + ttr))


def test_no_impact_seen_scores_full_recovery_and_availability(tmp_path):
    code, report = build(write_evidence(tmp_path / "in", fail_until=None), tmp_path / "out")
    assert code == 0 and report["figures"]["impact_observed"] is False
    c = components(report["resilience_score"])
    assert c["recovery"]["points"] == 30 and c["recovery"]["basis"] == "inference never failed: nothing to recover from"
    assert c["availability"]["points"] == 40
    assert report["resilience_score"]["cap"] is None


def test_a_failed_check_caps_at_50_and_lists_it(tmp_path):
    failed = Event("cleanup-dgd", "check_failed", {"check": "dgd_restored_exactly", "reason": "spec differs"}, T0 + 51)
    code, report = build(write_evidence(tmp_path / "in", fail_until=None, extra=[failed]), tmp_path / "out")
    assert code == 1
    score = report["resilience_score"]
    assert score["uncapped"] > FAILED_CHECK_CAP and score["score"] == FAILED_CHECK_CAP
    assert score["cap"] == "1 failed check(s) cap the score at 50: cleanup-dgd.dgd_restored_exactly"
    assert [s for s in score["checks"] if s["status"] == "failed"] == [
        {"check": "cleanup-dgd.dgd_restored_exactly", "status": "failed", "points": 0.0}
    ]
    # Below the cap, a failed check leaves the score as it is.
    code, report = build(write_evidence(tmp_path / "in2", fail_until=41), tmp_path / "out2", "--max-recovery-seconds", "10")
    score = report["resilience_score"]
    assert code == 1 and score["uncapped"] < FAILED_CHECK_CAP and score["score"] == score["uncapped"]
    assert score["cap"].startswith("1 failed check(s) cap the score at 50: inference.recovery_time")


def test_an_aborted_run_scores_zero_with_its_condition(tmp_path):
    aborted = Event("watch-abort", "aborted", {"condition": "availability<0.5 for 5s"}, T0 + 30)
    _, report = build(write_evidence(tmp_path / "in", fail_until=41, extra=[aborted]), tmp_path / "out")
    score = report["resilience_score"]
    assert score["score"] == 0.0 and score["cap"] == "aborted: availability<0.5 for 5s" and score["uncapped"] > 0
    assert resilience_score({**report, "timeline": [], "aborted": "p99>2s"}).cap == "aborted: p99>2s"


def test_missing_figures_leave_components_out_or_zero(tmp_path):
    _, report = build(write_evidence(tmp_path / "in", fail_until=41), tmp_path / "out")
    # A scenario without an XID (network, cuda-only) and no detection: detection is not applicable.
    no_xid = copy.deepcopy(report)
    no_xid["figures"]["detection_s"] = None
    no_xid["timeline"] = [e for e in no_xid["timeline"] if e["event"] != "fault_injected" or e.get("step") != "inject-xid"]
    c = components(resilience_score(no_xid).as_dict())
    assert c["detection"]["weight"] == 0 and "not applicable" in c["detection"]["basis"]
    expected = 100 * sum(x["points"] for x in c.values()) / 90
    assert resilience_score(no_xid).score == round(expected, 1)
    # The XID injected and never detected: zero, not left out.
    undetected = copy.deepcopy(report)
    undetected["figures"]["detection_s"] = None
    c = components(resilience_score(undetected).as_dict())
    assert c["detection"] == {**c["detection"], "weight": 10, "points": 0.0, "basis": "an XID was injected and never detected"}
    # Never recovered: recovery zero.
    never = copy.deepcopy(report)
    never["figures"]["time_to_recovery_s"] = None
    assert components(resilience_score(never).as_dict())["recovery"]["points"] == 0.0
    # No baseline phase: latency not applicable; no request during the fault: availability not applicable.
    bare = copy.deepcopy(report)
    bare["phases"] = [p for p in bare["phases"] if p["name"] != "baseline"]
    bare["figures"]["availability_during_fault"] = None
    c = components(resilience_score(bare).as_dict())
    assert c["latency"]["weight"] == 0 and c["availability"]["weight"] == 0


def test_no_records_scores_zero(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "events.jsonl").write_text(Event("inject-xid", "fault_injected", {"kind": "xid", "xid": 79}, T0).to_json() + "\n")
    code, report = build(tmp_path / "in", tmp_path / "out")
    assert code == 1
    score = report["resilience_score"]
    assert score["score"] == 0.0 and score["cap"] == "no inference records: nothing was measured"
