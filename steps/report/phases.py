"""Phase boundaries from the scenario's events (baseline → fault → remediation → recovery).

The phase of a request is decided by its start time: a request sent before the fault belongs to the
baseline even if it ended after. Names and the events that open each phase: `steps.event_names`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from steps.event_names import FAULT_START_EVENTS, RECOVERY_START_EVENTS, REMEDIATION_START_EVENTS, EventName, Phase
from steps.events import Event


@dataclass(frozen=True)
class Boundary:
    time: float
    phase: str
    event: str | None  # the event that opened it (None for the baseline)


def _first_at_or_after(events: list[Event], names: frozenset[str], after: float) -> Event | None:
    for event in events:
        if event.event in names and event.time >= after:
            return event
    return None


def boundaries(events: Iterable[Event]) -> list[Boundary]:
    """The phase boundaries in time order; the first is always the baseline from -inf."""
    ordered = sorted(events, key=lambda e: e.time)
    found = [Boundary(float("-inf"), Phase.BASELINE, None)]
    fault = _first_at_or_after(ordered, FAULT_START_EVENTS, float("-inf"))
    if fault is not None:
        found.append(Boundary(fault.time, Phase.FAULT, fault.event))
        remediation = _first_at_or_after(ordered, REMEDIATION_START_EVENTS, fault.time)
        if remediation is not None:
            found.append(Boundary(remediation.time, Phase.REMEDIATION, remediation.event))
        recovery = _first_at_or_after(ordered, RECOVERY_START_EVENTS, found[-1].time)
        if recovery is not None:
            found.append(Boundary(recovery.time, Phase.RECOVERY, recovery.event))
    for event in ordered:
        name = event.fields.get("phase")
        if event.event == EventName.PHASE_STARTED and isinstance(name, str) and name:
            found.append(Boundary(event.time, name, event.event))
    found.sort(key=lambda b: b.time)
    return found


class PhaseLookup:
    def __init__(self, bounds: list[Boundary]):
        self.bounds = bounds
        self._times = [b.time for b in bounds]

    def index_of(self, start: float) -> int:
        return max(0, bisect_right(self._times, start) - 1)

    def names(self) -> list[str]:
        return [b.phase for b in self.bounds]
