"""Statistics over the request records: per phase, recovery, and the time series the plot draws.

Definitions (they are the report's contract; the tests pin them):

- Latency percentiles are over *successful* requests, with numpy's "linear" method (the reference's).
- Success rate = ok / completed; cancelled requests (in flight when the load stopped) count as neither.
- Window recovery: requests in completion order; the window is the last `window` requests. Inference
  has recovered at the end of the request from which on every full window meets `threshold` until
  the end of the run (a flapping service has not recovered until it stops flapping). The same
  `SuccessWindow` rule is what `verify-inference --mode recover` waits for.
- Run level: the fault is the first `fault_injected` event; first failure is the first failed request
  that *ended* at or after it (the moment a client saw it); time to recovery is from the fault to
  window recovery counted from that first failure. Detection is the first `xid_detected` or
  `node_cordoned` after the fault. Availability during the fault is the success rate of requests
  started from the fault until recovery (or until the recovery phase / end of run when inference never
  failed or never recovered).
- Per phase, first failure and recovery are measured from the phase's start (the first request's
  start for the baseline), within the phase's own requests.
- Per phase, the impact is classified (`steps.inference.records.Impact`): `errors` are failed
  requests the client was told about (5xx, refused, dropped, malformed, …); `stalled` are requests that
  blocked: timed out, or succeeded only after `STALL_FACTOR` times the baseline's p99 latency (a hang
  that cleared in time). `impact` is none, errors, stalled or errors+stalled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from steps.event_names import FAULT_START_EVENTS, EventName, Phase
from steps.events import Event
from steps.inference.records import ERROR_OUTCOMES, STALLED_OUTCOMES, Impact, Outcome, stall_bound
from steps.report.phases import Boundary, PhaseLookup

OUTCOMES = list(Outcome)
OUTCOME_INDEX = {o.value: i for i, o in enumerate(OUTCOMES)}
OK_CODE = OUTCOME_INDEX[Outcome.OK.value]
CANCELLED = Outcome.CANCELLED.value
PERCENTILES = (50, 90, 99)
ERROR_CODES = np.array(sorted(OUTCOME_INDEX[o.value] for o in ERROR_OUTCOMES), dtype=np.int8)
STALLED_CODES = np.array(sorted(OUTCOME_INDEX[o.value] for o in STALLED_OUTCOMES), dtype=np.int8)


class ColumnBuilder:
    """Collects record lines as columns (a few bytes per request, not an object each)."""

    def __init__(self) -> None:
        self.start: list[float] = []
        self.end: list[float] = []
        self.latency: list[float] = []
        self.outcome: list[int] = []
        self.cancelled = 0

    def add(self, data: dict) -> bool:
        outcome = data.get("outcome")
        if outcome == CANCELLED:
            self.cancelled += 1
            return True
        code = OUTCOME_INDEX.get(outcome)
        if code is None:
            return False
        try:
            start, end, latency = float(data["start"]), float(data["end"]), float(data["latency"])
        except (KeyError, TypeError, ValueError):
            return False
        if not (math.isfinite(start) and math.isfinite(end) and math.isfinite(latency)):
            return False
        self.start.append(start)
        self.end.append(end)
        self.latency.append(latency)
        self.outcome.append(code)
        return True

    def build(self) -> Columns:
        order = np.argsort(np.asarray(self.start, dtype=float), kind="stable")
        outcome = np.asarray(self.outcome, dtype=np.int8)[order]
        return Columns(
            start=np.asarray(self.start, dtype=float)[order],
            end=np.asarray(self.end, dtype=float)[order],
            latency=np.asarray(self.latency, dtype=float)[order],
            outcome=outcome,
            ok=outcome == OK_CODE,
            cancelled=self.cancelled,
        )


@dataclass(frozen=True)
class Columns:
    """Completed requests, sorted by start time."""

    start: np.ndarray
    end: np.ndarray
    latency: np.ndarray
    outcome: np.ndarray
    ok: np.ndarray
    cancelled: int = 0

    def __len__(self) -> int:
        return len(self.start)

    def subset(self, mask: np.ndarray) -> Columns:
        return Columns(self.start[mask], self.end[mask], self.latency[mask], self.outcome[mask], self.ok[mask])


def percentile(values: np.ndarray, q: float) -> float | None:
    if len(values) == 0:
        return None
    return float(np.percentile(values, q, method="linear"))


def latency_summary(columns: Columns) -> dict[str, float | None]:
    good = columns.latency[columns.ok]
    summary: dict[str, float | None] = {f"p{q}": percentile(good, q) for q in PERCENTILES}
    summary["mean"] = float(good.mean()) if len(good) else None
    summary["max"] = float(good.max()) if len(good) else None
    return summary


def outcome_counts(columns: Columns) -> dict[str, int]:
    counts = np.bincount(columns.outcome.astype(np.int64), minlength=len(OUTCOMES)) if len(columns) else np.zeros(len(OUTCOMES), int)
    return {OUTCOMES[i].value: int(n) for i, n in enumerate(counts) if n}


def sustained_recovery(ok_in_completion_order: np.ndarray, window: int, threshold: float) -> int | None:
    """Index of the request at whose end inference recovered for good (see module docstring)."""
    n = len(ok_in_completion_order)
    if n < window:
        return None
    sums = np.cumsum(ok_in_completion_order.astype(np.int64))
    window_ok = sums[window - 1 :] - np.concatenate(([0], sums[: n - window]))
    satisfied = np.zeros(n, dtype=bool)
    satisfied[window - 1 :] = window_ok >= threshold * window - 1e-9
    if not satisfied[-1]:
        return None
    unsatisfied = np.flatnonzero(~satisfied)
    return int(unsatisfied[-1] + 1) if len(unsatisfied) else 0


def _by_end(columns: Columns) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(columns.end, kind="stable")
    return columns.end[order], columns.ok[order]


def failure_and_recovery(columns: Columns, since: float, window: int, threshold: float) -> dict[str, float | None]:
    """First failure ending at/after `since`, first success after it, sustained recovery after it."""
    end, ok = _by_end(columns)
    after = end >= since
    failed_after = np.flatnonzero(after & ~ok)
    if len(failed_after) == 0:
        return {"first_failure": None, "first_success_after_failure": None, "recovered": None}
    first = int(failed_after[0])
    successes = np.flatnonzero(ok[first:])
    index = sustained_recovery(ok[first:], window, threshold)
    return {
        "first_failure": float(end[first]),
        "first_success_after_failure": float(end[first + successes[0]]) if len(successes) else None,
        "recovered": float(end[first + index]) if index is not None else None,
    }


def final_window_ok(columns: Columns, window: int, threshold: float) -> bool:
    _, ok = _by_end(columns)
    if len(ok) < window:
        return False
    return bool(ok[-window:].sum() >= threshold * window - 1e-9)


@dataclass
class PhaseStats:
    name: str
    start: float
    end: float
    requests: int
    ok: int
    success_rate: float | None
    latency: dict[str, float | None]
    outcomes: dict[str, int]
    time_to_first_failure_s: float | None
    time_to_recovery_s: float | None
    recovered: bool | None  # None: nothing failed in this phase
    errors: int = 0  # failed requests the client was told about
    stalled: int = 0  # requests that blocked: timed out, or succeeded only past the stall bound
    impact: str = Impact.NONE.value

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def impact_counts(columns: Columns, bound: float | None) -> tuple[int, int]:
    """(errors, stalled) among the requests (module docstring)."""
    errors = int(np.isin(columns.outcome, ERROR_CODES).sum())
    stalled = int(np.isin(columns.outcome, STALLED_CODES).sum())
    if bound is not None:
        stalled += int((columns.ok & (columns.latency > bound)).sum())
    return errors, stalled


def phase_stats(columns: Columns, bounds: list[Boundary], run_end: float, window: int, threshold: float) -> list[PhaseStats]:
    lookup = PhaseLookup(bounds)
    index = np.array([lookup.index_of(s) for s in columns.start], dtype=np.int64) if len(columns) else np.zeros(0, np.int64)
    baseline = columns.subset(index == 0) if bounds and bounds[0].phase == Phase.BASELINE else columns.subset(index < 0)
    stall_latency = stall_bound(latency_summary(baseline)["p99"])
    stats = []
    for i, bound in enumerate(bounds):
        part = columns.subset(index == i)
        begin = bound.time if np.isfinite(bound.time) else (float(part.start[0]) if len(part) else None)
        if begin is None:
            continue  # a baseline with no requests: nothing to say
        finish = bounds[i + 1].time if i + 1 < len(bounds) else run_end
        found = failure_and_recovery(part, begin, window, threshold)
        ok = int(part.ok.sum())
        errors, stalled = impact_counts(part, stall_latency)
        stats.append(
            PhaseStats(
                name=bound.phase,
                start=begin,
                end=finish,
                requests=len(part),
                ok=ok,
                success_rate=ok / len(part) if len(part) else None,
                latency=latency_summary(part),
                outcomes=outcome_counts(part),
                time_to_first_failure_s=None if found["first_failure"] is None else found["first_failure"] - begin,
                time_to_recovery_s=None if found["recovered"] is None else found["recovered"] - begin,
                recovered=None if found["first_failure"] is None else found["recovered"] is not None,
                errors=errors,
                stalled=stalled,
                impact=Impact.of(errors, stalled).value,
            )
        )
    return stats


def _first(events: list[Event], names: set[str] | frozenset[str], after: float) -> Event | None:
    return next((e for e in events if e.event in names and e.time >= after), None)


@dataclass
class RunFigures:
    fault_time: float | None
    first_failure: float | None
    first_success_after_failure: float | None
    recovered: float | None
    detection_time: float | None
    time_to_first_failure_s: float | None
    time_to_recovery_s: float | None
    detection_s: float | None
    availability_during_fault: float | None
    requests_during_fault: int
    final_window_ok: bool
    impact_observed: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def run_figures(columns: Columns, events: list[Event], bounds: list[Boundary], run_end: float, window: int, threshold: float) -> RunFigures:
    ordered = sorted(events, key=lambda e: e.time)
    fault = _first(ordered, FAULT_START_EVENTS, float("-inf"))
    since = fault.time if fault else float("-inf")
    found = failure_and_recovery(columns, since, window, threshold)
    detected = _first(ordered, {EventName.XID_DETECTED, EventName.NODE_CORDONED}, since) if fault else None
    availability, during = None, 0
    if fault is not None:
        if found["first_failure"] is not None:
            until = found["recovered"] if found["recovered"] is not None else run_end
        else:
            recovery = next((b.time for b in bounds if b.phase == Phase.RECOVERY), run_end)
            until = recovery
        mask = (columns.start >= fault.time) & (columns.start < until) if until > fault.time else columns.start < -np.inf
        during = int(mask.sum())
        availability = float(columns.ok[mask].sum() / during) if during else None
    origin = fault.time if fault else found["first_failure"]
    return RunFigures(
        fault_time=fault.time if fault else None,
        first_failure=found["first_failure"],
        first_success_after_failure=found["first_success_after_failure"],
        recovered=found["recovered"],
        detection_time=detected.time if detected else None,
        time_to_first_failure_s=None if fault is None or found["first_failure"] is None else found["first_failure"] - fault.time,
        time_to_recovery_s=None if origin is None or found["recovered"] is None else found["recovered"] - origin,
        detection_s=None if detected is None or fault is None else detected.time - fault.time,
        availability_during_fault=availability,
        requests_during_fault=during,
        final_window_ok=final_window_ok(columns, window, threshold),
        impact_observed=found["first_failure"] is not None,
    )


@dataclass
class Series:
    """Per time bucket (by request start): what the timeline plot draws."""

    bucket_s: float
    t: list[float] = field(default_factory=list)  # bucket start, seconds from the run's origin
    requests: list[int] = field(default_factory=list)
    success_rate: list[float | None] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p99: list[float | None] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def series(columns: Columns, origin: float, run_end: float, max_buckets: int = 240) -> Series:
    span = max(run_end - origin, 1e-6)
    bucket = max(0.25, span / max_buckets)
    # Round the bucket to a readable size so a person can reason about "per 5 s".
    for nice in (0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if bucket <= nice:
            bucket = float(nice)
            break
    out = Series(bucket_s=bucket)
    if not len(columns):
        return out
    slot = np.floor((columns.start - origin) / bucket).astype(np.int64)
    count = int(slot.max()) + 1
    for i in range(count):
        mask = slot == i
        n = int(mask.sum())
        out.t.append(i * bucket)
        out.requests.append(n)
        if n == 0:
            out.success_rate.append(None)
            out.p50.append(None)
            out.p99.append(None)
            continue
        good = columns.latency[mask & columns.ok]
        out.success_rate.append(float(columns.ok[mask].sum() / n))
        out.p50.append(percentile(good, 50))
        out.p99.append(percentile(good, 99))
    return out


def build_columns(records: Iterable[dict]) -> Columns:
    builder = ColumnBuilder()
    for data in records:
        builder.add(data)
    return builder.build()
