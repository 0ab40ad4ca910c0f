"""The report states which action NVSentinel was expected to take, why, under which posture, and what it did."""

import json

from steps.events import Event
from steps.report.markdown import render_markdown
from steps.report.nvsentinel import markdown_line, nvsentinel_summary


def event(t: float, step: str, name: str, **fields) -> Event:
    return Event.from_json(json.dumps({"time": t, "step": step, "event": name, **fields}))


def test_summary_joins_the_injection_and_the_cordon_watch():
    events = [
        event(
            1,
            "inject-xid",
            "fault_injected",
            kind="xid",
            xid=48,
            expected_action="RESTART_VM",
            gpu_metadata=False,
            expected_why="workbook RESET_GPU; not in gpu_metadata.json",
        ),
        event(
            2,
            "wait-for-cordon",
            "check_passed",
            check="nvsentinel_action",
            expect="cordon",
            expect_why="rulesets cordon",
            expected_action="RESTART_VM",
            expected_why="workbook RESET_GPU; not in gpu_metadata.json",
            observed_action="RESTART_VM",
        ),
    ]
    summary = nvsentinel_summary(events)
    assert summary["expected_action"] == "RESTART_VM" and summary["gpu_metadata"] is False
    assert summary["expect"] == "cordon" and summary["observed_action"] == "RESTART_VM" and summary["outcome"] == "as expected"
    line = markdown_line(summary)[-1]
    assert line.startswith("NVSentinel: expected RESTART_VM — workbook") and "posture `cordon`" in line


def test_a_deduplicated_run_says_so_and_other_runs_have_no_line():
    events = [
        event(1, "wait-for-cordon", "xid_deduplicated", expected_action="COMPONENT_RESET", expected_why="w", expect="cordon"),
        event(2, "wait-for-cordon", "check_failed", check="nvsentinel_action", reason="deduplicated: x"),
    ]
    assert nvsentinel_summary(events)["outcome"] == "deduplicated"
    assert nvsentinel_summary([event(1, "load", "load_started")]) is None and markdown_line(None) == []


def test_markdown_carries_the_line():
    report = {
        "scenario": "xid-only",
        "verdict": "passed",
        "run_id": "r",
        "duration_s": 1,
        "inputs": {"requests": 0},
        "figures": {
            "time_to_first_failure_s": None,
            "detection_s": None,
            "time_to_recovery_s": None,
            "availability_during_fault": None,
            "requests_during_fault": 0,
        },
        "phases": [],
        "checks": [],
        "timeline": [],
        "nvsentinel": {"expected_action": "COMPONENT_RESET", "expected_why": "154 text", "expect": "annotate", "expect_why": "dry-run"},
    }
    assert "NVSentinel: expected COMPONENT_RESET — 154 text under posture `annotate` (dry-run)." in render_markdown(report)
