"""The three ways a scenario uses inference: gate, load and recover.

- gate: N requests before anything is injected; the steady state must hold or nothing is injected.
- load: traffic for the whole scenario so the report can show availability from baseline to recovery;
  stops on SIGTERM/SIGINT (Argo stops it), after `duration`, or when a stop file appears.
- recover: traffic until the success rate over a full sliding window reaches the threshold, or the
  deadline passes.

Every request of every mode is streamed to the records file; only counters stay in memory.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from steps.inference.client import InferenceClient
from steps.inference.driver import Driver, Pace
from steps.inference.records import Outcome, RecordWriter, RequestRecord
from steps.inference.success_window import SuccessWindow

STOP_FILE_POLL_S = 0.2


@dataclass
class Tally:
    """Outcome counts (bounded memory whatever the run length)."""

    by_outcome: Counter = field(default_factory=Counter)
    first_start: float | None = None
    last_end: float | None = None

    def add(self, record: RequestRecord) -> None:
        self.by_outcome[record.outcome.value] += 1
        self.first_start = record.start if self.first_start is None else min(self.first_start, record.start)
        self.last_end = record.end if self.last_end is None else max(self.last_end, record.end)

    @property
    def completed(self) -> int:
        return sum(n for outcome, n in self.by_outcome.items() if outcome != Outcome.CANCELLED.value)

    @property
    def ok(self) -> int:
        return self.by_outcome.get(Outcome.OK.value, 0)

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.completed if self.completed else None

    def as_dict(self) -> dict:
        return {
            "requests": self.completed,
            "ok": self.ok,
            "success_rate": self.success_rate,
            "outcomes": dict(sorted(self.by_outcome.items())),
        }


@dataclass
class ModeResult:
    mode: str
    passed: bool
    stop_reason: str
    tally: Tally
    dispatched: int
    slipped: int
    recovered_at: float | None = None
    model: str | None = None

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "passed": self.passed,
            "stop_reason": self.stop_reason,
            "dispatched": self.dispatched,
            "schedule_slips": self.slipped,
            "recovered_at": self.recovered_at,
            "model": self.model,
            **self.tally.as_dict(),
        }


def _recorder(writer: RecordWriter, tally: Tally):
    def record(r: RequestRecord) -> None:
        writer.write(r)
        tally.add(r)

    return record


async def run_gate(
    client: InferenceClient, pace: Pace, writer: RecordWriter, requests: int, threshold: float, phase: str | None
) -> ModeResult:
    tally = Tally()
    driver = Driver(client, pace, _recorder(writer, tally), phase)
    reason = await driver.run(max_requests=requests, wait_for_all=True)
    rate = tally.success_rate
    passed = rate is not None and tally.completed == requests and tally.ok >= threshold * requests - 1e-9
    return ModeResult("gate", passed, reason, tally, driver.dispatched, driver.slipped, model=client.model)


async def run_recover(
    client: InferenceClient, pace: Pace, writer: RecordWriter, window: int, threshold: float, deadline_s: float, phase: str | None
) -> ModeResult:
    tally = Tally()
    sliding = SuccessWindow(window)
    recovered: list[float] = []
    driver: Driver

    def record(r: RequestRecord) -> None:
        writer.write(r)
        tally.add(r)
        if r.outcome is Outcome.CANCELLED or recovered:
            return
        sliding.add(r.ok)
        if sliding.satisfied(threshold):
            recovered.append(round(r.end, 6))  # as written in the records file
            driver.request_stop("recovered")

    driver = Driver(client, pace, record, phase)
    until = asyncio.get_running_loop().time() + deadline_s
    reason = await driver.run(until=until)
    return ModeResult(
        "recover",
        bool(recovered),
        reason,
        tally,
        driver.dispatched,
        driver.slipped,
        recovered_at=recovered[0] if recovered else None,
        model=client.model,
    )


async def _watch_stop_file(path: Path, driver: Driver) -> None:
    # Polling a file is the condition itself (no inotify in every container runtime).
    while not driver.stopping:
        if path.exists():
            driver.request_stop("stop file")
            return
        await asyncio.sleep(STOP_FILE_POLL_S)


async def run_load(
    client: InferenceClient, pace: Pace, writer: RecordWriter, duration_s: float | None, stop_file: Path | None, phase: str | None
) -> ModeResult:
    tally = Tally()
    driver = Driver(client, pace, _recorder(writer, tally), phase)
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, driver.request_stop, f"signal {signal.Signals(signum).name}")
            handled.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests driving it in-process)
            pass
    watcher = asyncio.ensure_future(_watch_stop_file(stop_file, driver)) if stop_file is not None else None
    try:
        until = None if duration_s is None else loop.time() + duration_s
        reason = await driver.run(until=until)
        if reason == "deadline":
            reason = "duration"
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        for signum in handled:
            loop.remove_signal_handler(signum)
    return ModeResult("load", True, reason, tally, driver.dispatched, driver.slipped, model=client.model)
