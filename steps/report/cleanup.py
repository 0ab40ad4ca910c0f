"""Our own cleanup, told apart from the fault (issue 15 item 14).

Restoring the workload rolls every worker once more: a disturbance that is ours, not the GPU
failure's. The scenarios therefore measure recovery before they restore (verify-inference runs
before cleanup-dgd), and the report does the same: the fault's figures are computed from the
requests that started before our first workload restore (`dgd_restored` at or after the fault),
and what followed the restore is reported on its own as `cleanup_disruption_seconds`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steps.event_names import FAULT_START_EVENTS, EventName
from steps.events import Event
from steps.report.stats import Columns, failure_and_recovery


def restore_time(events: list[Event]) -> float | None:
    """When our cleanup first restored the workload after the fault (None: never, or no fault)."""
    ordered = sorted(events, key=lambda e: e.time)
    fault = next((e for e in ordered if e.event in FAULT_START_EVENTS), None)
    if fault is None:
        return None
    return next((e.time for e in ordered if e.event == EventName.DGD_RESTORED and e.time >= fault.time), None)


def before(columns: Columns, cut: float | None) -> Columns:
    """The requests the fault's figures are computed from: those that started before our restore."""
    return columns if cut is None else columns.subset(columns.start < cut)


@dataclass(frozen=True)
class CleanupFigures:
    restore_time: float | None
    # Seconds from our restore until inference met the threshold for good again; 0.0 when nothing
    # failed after it, None when there was no restore or inference never came back after it.
    cleanup_disruption_seconds: float | None
    cleanup_failed_requests: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def cleanup_figures(columns: Columns, cut: float | None, window: int, threshold: float) -> CleanupFigures:
    if cut is None:
        return CleanupFigures(None, None, 0)
    after = columns.subset(columns.start >= cut)
    found = failure_and_recovery(after, cut, window, threshold)
    failed = int(np.count_nonzero(~after.ok))
    if found["first_failure"] is None:
        return CleanupFigures(cut, 0.0, failed)
    recovered = found["recovered"]
    return CleanupFigures(cut, None if recovered is None else recovered - cut, failed)
