"""A synthetic run with known answers: every figure of the report can be computed by hand from it."""

from __future__ import annotations

import json
from pathlib import Path

from steps.events import Event

T0 = 1_000_000.0
FAULT, DETECTED, CORDONED, EVICTED, RESTORED, CLEARED = 20.0, 25.0, 27.5, 30.0, 40.0, 40.5
FAIL_FROM, FAIL_UNTIL = 21, 41  # requests started at these offsets (inclusive) fail
FAILED_LATENCY = 0.5


def latency(i: int) -> float:
    return 0.1 + i * 0.001


def records(n: int = 60) -> list[dict]:
    out = []
    for i in range(n):
        failed = FAIL_FROM <= i <= FAIL_UNTIL
        lat = FAILED_LATENCY if failed else latency(i)
        out.append(
            {
                "seq": i + 1,
                "start": T0 + i,
                "end": T0 + i + lat,
                "latency": lat,
                "outcome": "http_5xx" if failed else "ok",
                "source": "load-test",
            }
        )
    return out


def events() -> list[Event]:
    steps = [
        (FAULT, "inject-xid", "fault_injected", {"xid": 79}),
        (DETECTED, "wait-for-cordon", "xid_detected", {}),
        (CORDONED, "wait-for-cordon", "node_cordoned", {}),
        (EVICTED, "wait-for-cordon", "pods_evicted", {}),
        (RESTORED, "cleanup-dgd", "dgd_restored", {}),
        (CLEARED, "cleanup-dgd", "fault_cleared", {}),
    ]
    return [Event(step=s, event=e, fields=f, time=T0 + t) for t, s, e, f in steps]


# How a scenario runs since issue 15 item 14: recovery is measured (verify-inference) BEFORE our
# cleanup restores the workload, so a report input has the restore after the recovery.
RESTORED_AFTER_RECOVERY = 50.0


def run_events(restored: float = RESTORED_AFTER_RECOVERY) -> list[Event]:
    """`events()` with the cleanup's restore (and toggle-off) at `restored`."""
    shift = {"dgd_restored": restored, "fault_cleared": restored + 0.5}
    return [Event(e.step, e.event, e.fields, T0 + shift[e.event]) if e.event in shift else e for e in events()]


def linear_percentile(values: list[float], q: float) -> float:
    """numpy's 'linear' method, written out as the oracle."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def write_run(folder: Path, extra_events: list[Event] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    (folder / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in [*run_events(), *extra_events]))
    return folder
