"""The abort watcher's loop: probe, sample, evaluate, once per interval, until a condition fires or
the watcher is told to stop.

Sources are opened only for the conditions that need them: the frontend probes (availability, p99)
run as the load step's open-loop driver does (`steps.inference.driver`), the nodes are listed once
per interval (breaker, cordoned: one list serves both), each promql condition is one instant query.
A source that fails to answer gives no data for that interval (the condition neither holds nor
resets, `steps.guard.holding`) and is reported once through `on_unavailable`, so a flaky
Prometheus neither aborts a run nor silently disarms the watch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from steps.guard import samples
from steps.guard.conditions import Condition, Metric
from steps.guard.holding import Holding
from steps.inference.client import InferenceTarget
from steps.kube.client import Kube, Ref
from steps.report.prometheus import PrometheusApi, PrometheusError

PROBE_METRICS = (Metric.AVAILABILITY, Metric.P99)
NODE_METRICS = (Metric.BREAKER, Metric.CORDONED)


@dataclass(frozen=True)
class Sources:
    probe: InferenceTarget | None = None
    probe_rate: float = 2.0
    probe_concurrency: int = 4
    prometheus: PrometheusApi | None = None
    kube: Kube | None = None


@dataclass(frozen=True)
class Fired:
    condition: Condition
    value: float
    held_s: float


@dataclass(frozen=True)
class Snapshot:
    """What one interval observed: the probes completed in it, the nodes, each promql answer's size."""

    probes: list
    nodes: list[dict] | None
    promql: dict[str, int | None]


def value_of(condition: Condition, snapshot: Snapshot) -> float | None:
    """The condition's sample from one snapshot (None: no data this interval)."""
    metric = condition.metric
    if metric is Metric.AVAILABILITY:
        return samples.availability(snapshot.probes)
    if metric is Metric.P99:
        return samples.p99_seconds(snapshot.probes)
    if metric is Metric.PROMQL:
        count = snapshot.promql.get(condition.expr)
        return None if count is None else float(count)
    if snapshot.nodes is None:
        return None
    if metric is Metric.CORDONED:
        return float(samples.cordoned(snapshot.nodes))
    return samples.breaker_utilization(snapshot.nodes)


class Evaluator:
    """Every condition's `Holding`; the first one to fire wins (declaration order breaks ties)."""

    def __init__(self, conditions: tuple[Condition, ...]):
        self.holdings = [Holding(c) for c in conditions]

    def step(self, t: float, snapshot: Snapshot) -> Fired | None:
        fired = None
        for holding in self.holdings:
            value = value_of(holding.condition, snapshot)
            if holding.observe(t, value) and fired is None:
                assert value is not None and holding.since is not None
                fired = Fired(holding.condition, value, round(t - holding.since, 3))
        return fired


def check_sources(conditions: tuple[Condition, ...], sources: Sources) -> None:
    """Which source each condition needs is there (the command validated the values themselves)."""
    metrics = {c.metric for c in conditions}
    if metrics & set(PROBE_METRICS) and sources.probe is None:
        raise ValueError("availability and p99 conditions need the frontend URL")
    if Metric.PROMQL in metrics and sources.prometheus is None:
        raise ValueError("promql conditions need a Prometheus URL")
    if metrics & set(NODE_METRICS) and sources.kube is None:
        raise ValueError("breaker and cordoned conditions need the cluster")


class Watcher:
    def __init__(self, conditions: tuple[Condition, ...], sources: Sources, on_unavailable: Callable[[str, str], None]):
        check_sources(conditions, sources)
        self.conditions = conditions
        self.sources = sources
        self.evaluator = Evaluator(conditions)
        self._on_unavailable = on_unavailable
        self._reported: set[str] = set()

    def _unavailable(self, source: str, why: str) -> None:
        if source not in self._reported:
            self._reported.add(source)
            self._on_unavailable(source, why)

    def _nodes(self) -> list[dict] | None:
        if self.sources.kube is None or not {c.metric for c in self.conditions} & set(NODE_METRICS):
            return None
        try:
            return self.sources.kube.list(Ref("v1", "nodes", None, "")).get("items") or []
        except Exception as error:  # noqa: BLE001 - an API hiccup is no data for one interval, not the end of the watch
            self._unavailable("nodes", f"{type(error).__name__}: {error}")
            return None

    def _promql(self) -> dict[str, int | None]:
        answers: dict[str, int | None] = {}
        for condition in self.conditions:
            if condition.metric is not Metric.PROMQL or self.sources.prometheus is None:
                continue
            try:
                answers[condition.expr] = len(self.sources.prometheus.query(condition.expr, time.time()))
            except PrometheusError as error:
                self._unavailable(f"promql {condition.expr}", str(error))
                answers[condition.expr] = None
        return answers

    def _observe(self, probes: list) -> Snapshot:
        return Snapshot(probes, self._nodes(), self._promql())

    async def run(self, interval_s: float, stop: asyncio.Event) -> Fired | None:
        """Until a condition fires (its Fired) or `stop` is set (None)."""
        tally = samples.ProbeTally()
        driver = None
        probing = None
        http = None
        if self.sources.probe is not None and {c.metric for c in self.conditions} & set(PROBE_METRICS):
            from steps.inference.client import InferenceClient, WallClock, new_http_client
            from steps.inference.driver import Driver, Pace

            http = new_http_client(self.sources.probe_concurrency, self.sources.probe.timeout)
            client = InferenceClient(self.sources.probe, http, WallClock(), "watch-abort")
            driver = Driver(client, Pace(self.sources.probe_rate, self.sources.probe_concurrency, grace=0.0), tally.add, "watch")
            probing = asyncio.ensure_future(driver.run())
        try:
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=interval_s)
                    return None
                except TimeoutError:
                    pass
                snapshot = await asyncio.to_thread(self._observe, tally.take())
                fired = self.evaluator.step(time.monotonic(), snapshot)
                if fired is not None:
                    return fired
        finally:
            if driver is not None and probing is not None:
                driver.request_stop("watch over")
                await asyncio.gather(probing, return_exceptions=True)
            if http is not None:
                await http.aclose()
