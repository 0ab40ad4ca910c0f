"""What the run expected of NVSentinel and why, from the steps' events: inject-xid's per-node
expectation (`fault_injected` kind xid), wait-for-cordon's posture and its `nvsentinel_action` check."""

from __future__ import annotations

from steps.event_names import EventName
from steps.events import Event

FIELDS = (
    "expected_action",
    "expected_why",
    "expected_error_code",
    "expected_verified",
    "gpu_metadata",
    "driver_version",
    "expect",
    "expect_why",
    "observed_action",
)


def nvsentinel_summary(events: list[Event]) -> dict | None:
    """Later events refine earlier ones (wait-for-cordon knows the posture and what NVSentinel did)."""
    summary: dict = {}
    for event in sorted(events, key=lambda e: e.time):
        relevant = (
            (event.event == EventName.FAULT_INJECTED and event.fields.get("kind") == "xid")
            or (event.event in ("check_passed", "check_failed") and event.fields.get("check") == "nvsentinel_action")
            or event.event == "xid_deduplicated"
        )
        if not relevant:
            continue
        summary.update({k: event.fields[k] for k in FIELDS if event.fields.get(k) is not None})
        if event.event == "xid_deduplicated":
            summary["outcome"] = "deduplicated"
        elif event.event in ("check_passed", "check_failed"):
            summary.setdefault("outcome", "as expected" if event.event == "check_passed" else event.fields.get("reason", "failed"))
    return summary or None


def markdown_line(summary: dict | None) -> list[str]:
    if not summary or "expected_action" not in summary:
        return []
    posture = f" under posture `{summary['expect']}` ({summary.get('expect_why', '')})" if summary.get("expect") else ""
    observed = f"; NVSentinel chose {summary['observed_action']}" if summary.get("observed_action") else ""
    outcome = f"; {summary['outcome']}" if summary.get("outcome") else ""
    if summary.get("deduplicated_evidence"):
        outcome += f" ({summary['deduplicated_evidence']})"
    return ["", f"NVSentinel: expected {summary['expected_action']} — {summary.get('expected_why', '')}{posture}{observed}{outcome}."]
