"""Paced dispatch: requests start at a fixed rate, at most `concurrency` in flight, on one event loop.

Open loop on purpose: the reference sent the next request only after the previous one returned, so a
hanging frontend produced no evidence at all. Here the schedule keeps going; when every slot is busy
(the server hangs) the dispatcher waits for a slot and then resumes from *now* instead of firing a
burst to catch up, which would hammer a recovering frontend.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from steps.inference.client import InferenceClient
from steps.inference.records import RequestRecord


@dataclass(frozen=True)
class Pace:
    rate: float  # request starts per second
    concurrency: int  # requests in flight at most
    grace: float = 5.0  # seconds in-flight requests get to finish once the run is told to stop


class Driver:
    def __init__(self, client: InferenceClient, pace: Pace, on_record: Callable[[RequestRecord], None], phase: str | None):
        self._client = client
        self._pace = pace
        self._on_record = on_record
        self._phase = phase
        self._stop = asyncio.Event()
        self._inflight: dict[asyncio.Task, tuple[int, float]] = {}
        self.stop_reason: str | None = None
        self.dispatched = 0
        self.slipped = 0  # times the schedule was reset because every slot was busy

    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def _sleep_or_stop(self, delay: float) -> None:
        if delay <= 0:
            return
        try:
            async with asyncio.timeout(delay):
                await self._stop.wait()
        except TimeoutError:
            pass

    async def _acquire(self, slots: asyncio.Semaphore, until: float | None) -> bool:
        """A free slot, unless the run stops or its deadline passes first."""
        if not slots.locked():
            await slots.acquire()
            return True
        loop = asyncio.get_running_loop()
        acquire = asyncio.ensure_future(slots.acquire())
        stopped = asyncio.ensure_future(self._stop.wait())
        timeout = None if until is None else max(0.0, until - loop.time())
        await asyncio.wait({acquire, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for waiter in (acquire, stopped):
            waiter.cancel()
        await asyncio.gather(acquire, stopped, return_exceptions=True)
        got = acquire.done() and not acquire.cancelled()
        if got and (self._stop.is_set() or (until is not None and loop.time() >= until)):
            slots.release()
            return False
        return got

    def _finished(self, slots: asyncio.Semaphore, task: asyncio.Task) -> None:
        seq, started = self._inflight.pop(task)
        slots.release()
        if task.cancelled():
            record = self._client.cancelled(seq, started, self._phase)
        elif task.exception() is not None:  # send() classifies every failure; this is a bug, keep evidence
            record = self._client.cancelled(seq, started, self._phase)
        else:
            record = task.result()
        self._on_record(record)

    async def run(self, max_requests: int | None = None, until: float | None = None, wait_for_all: bool = False) -> str:
        """Dispatch until stopped, `max_requests` started or the loop time `until`; then settle the
        requests in flight (all of them with `wait_for_all`, otherwise within the grace period)."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self._pace.rate
        slots = asyncio.Semaphore(self._pace.concurrency)
        next_at = loop.time()
        while not self._stop.is_set():
            if max_requests is not None and self.dispatched >= max_requests:
                self.stop_reason = self.stop_reason or "requests"
                break
            if until is not None and loop.time() >= until:
                self.request_stop("deadline")
                break
            if not await self._acquire(slots, until):
                continue
            delay = next_at - loop.time()
            if until is not None:
                delay = min(delay, until - loop.time())
            await self._sleep_or_stop(delay)
            if self._stop.is_set() or (until is not None and loop.time() >= until):
                slots.release()
                continue
            self.dispatched += 1
            task = asyncio.ensure_future(self._client.send(self.dispatched, self._phase))
            self._inflight[task] = (self.dispatched, time.perf_counter())
            task.add_done_callback(partial(self._finished, slots))
            next_at += interval
            now = loop.time()
            if next_at < now - interval:
                self.slipped += 1
                next_at = now
        await self._settle(wait_for_all)
        return self.stop_reason or "stopped"

    async def _settle(self, wait_for_all: bool) -> None:
        pending = set(self._inflight)
        if not pending:
            return
        _, pending = await asyncio.wait(pending, timeout=None if wait_for_all else self._pace.grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(0)  # let the done-callbacks of cancelled tasks record them
