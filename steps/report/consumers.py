"""The NVML consumers' answers to the fault (wait-for-cordon --expect-consumer): who answered, with
what, how long after the fault; and who was expected and did not."""

from __future__ import annotations

from steps.event_names import EventName
from steps.events import Event

CHECK_PREFIX = "consumer_"


def consumer_summary(events: list[Event]) -> list[dict]:
    """One entry per expected consumer answer, in time order: consumer, check, latency_s, evidence (or reason)."""
    out: list[dict] = []
    for event in sorted(events, key=lambda e: e.time):
        fields = event.fields
        if event.event == EventName.CONSUMER_DETECTED:
            latency = fields.get("latency_ms")
            out.append(
                {
                    "consumer": fields.get("consumer"),
                    "check": fields.get("check"),
                    "answered": True,
                    "latency_s": latency / 1000 if isinstance(latency, (int, float)) else None,
                    "evidence": fields.get("evidence"),
                    "upper_bound": bool(fields.get("at_start")),
                }
            )
        elif event.event == EventName.CHECK_FAILED and str(fields.get("check", "")).startswith(CHECK_PREFIX):
            out.append({"consumer": fields.get("consumer"), "check": fields["check"], "answered": False, "reason": fields.get("reason")})
    return out


def markdown_lines(summary: list[dict]) -> list[str]:
    if not summary:
        return []
    lines = ["", "| NVML consumer | answer | after the fault |", "|---|---|---:|"]
    for entry in summary:
        if entry["answered"]:
            latency = "–" if entry["latency_s"] is None else f"{'≤ ' if entry['upper_bound'] else ''}{entry['latency_s']:.1f} s"
            lines.append(f"| {entry['consumer']} | {entry['evidence']} | {latency} |")
        else:
            lines.append(f"| {entry['consumer']} | none: {entry['reason']} | – |")
    return lines
