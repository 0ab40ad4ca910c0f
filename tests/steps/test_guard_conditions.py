"""abort-if: the strict parser and the evaluation (held for the duration → fires; flapping → never)."""

from __future__ import annotations

import pytest

from steps.errors import BadInput
from steps.guard.conditions import Metric, Op, parse_conditions
from steps.guard.holding import Holding
from steps.guard.samples import availability, breaker_utilization, cordoned, p99_seconds
from steps.guard.watcher import Evaluator, Snapshot
from steps.inference.records import Outcome, RequestRecord


def test_every_form_parses():
    found = parse_conditions(
        'availability<0.5 for 5s; p99>2000ms for 10s\npromql:sum(up{job="dynamo"}) < 1 for 30s; breaker>0.3; cordoned>1; p99>=2s'
    )
    assert [(c.metric, c.op, c.threshold, c.for_s) for c in found] == [
        (Metric.AVAILABILITY, Op.LT, 0.5, 5.0),
        (Metric.P99, Op.GT, 2.0, 10.0),
        (Metric.PROMQL, None, 0.0, 30.0),
        (Metric.BREAKER, Op.GT, 0.3, 0.0),
        (Metric.CORDONED, Op.GT, 1.0, 0.0),
        (Metric.P99, Op.GE, 2.0, 0.0),
    ]
    assert found[2].expr == 'sum(up{job="dynamo"}) < 1'
    assert found[0].text == "availability<0.5 for 5s"
    assert parse_conditions("  ") == ()
    # A metric name containing "for" is not mistaken for the duration keyword.
    assert parse_conditions("promql:requests_for_model == 0 for 1m")[0].expr == "requests_for_model == 0"


@pytest.mark.parametrize(
    "text",
    [
        "availability<<0.5",
        "availability<1.5 for 5s",
        "availability<-0.1",
        "availability<0.5 for",
        "availability<0.5 for 5",
        "availability<0.5 for 0s",
        "availability<0.5 for 25h",
        "availability<0.5 for 5s extra",
        "availability<nan",
        "p99>2000 for 5s",
        "p99>2m",
        "breaker>2",
        "cordoned>1.5",
        "cordoned>-1",
        "latency>5s",
        "promql:",
        "promql:sum(up",
        'promql:up{job="x} == 0',
        "promql<1",
        "cordoned>1;;breaker>0.5",
        "cordoned>1;",
        "cordoned",
    ],
)
def test_malformed_conditions_are_refused_with_one_line(text):
    with pytest.raises(BadInput) as error:
        parse_conditions(text)
    assert "\n" not in str(error.value) and "abort-if" in str(error.value)


def _condition(text):
    return parse_conditions(text)[0]


def test_a_condition_true_for_its_duration_fires():
    holding = Holding(_condition("cordoned>1 for 5s"))
    assert [holding.observe(t, 2) for t in (0, 1, 2, 3, 4)] == [False] * 5
    assert holding.observe(5, 3)


def test_a_flapping_condition_never_fires():
    holding = Holding(_condition("cordoned>1 for 5s"))
    fired = [holding.observe(t, 2 if t % 2 == 0 else 0) for t in range(60)]
    assert not any(fired)


def test_no_data_neither_holds_nor_resets():
    holding = Holding(_condition("availability<0.5 for 5s"))
    assert not holding.observe(0, 0.0)
    assert not any(holding.observe(t, None) for t in (1, 2, 3, 4, 5, 6))  # nothing fires without evidence
    assert holding.observe(7, 0.0)  # the run of true samples went on through the gap
    again = Holding(_condition("availability<0.5 for 5s"))
    assert not again.observe(0, 0.0) and not again.observe(3, 1.0) and not again.observe(6, 0.0)  # reset by a good sample


def test_without_for_the_first_true_sample_fires():
    assert Holding(_condition("breaker>0.3")).observe(0, 0.5)
    assert not Holding(_condition("breaker>0.3")).observe(0, 0.3)


def _record(ok: bool, latency: float) -> RequestRecord:
    return RequestRecord(seq=0, start=0.0, end=latency, latency=latency, outcome=Outcome.OK if ok else Outcome.TIMEOUT)


def test_probe_samples():
    records = [_record(True, 0.1), _record(False, 10.0), _record(True, 0.2), _record(True, 0.3)]
    assert availability(records) == 0.75
    assert p99_seconds(records) == pytest.approx(0.3 + (10.0 - 0.3) * 0.97)  # numpy "linear" over the sorted latencies
    assert availability([]) is None and p99_seconds([]) is None


def _node(name, gpu, cordoned_):
    labels = {"nvidia.com/gpu.present": "true"} if gpu else {}
    return {"metadata": {"name": name, "labels": labels}, "spec": {"unschedulable": cordoned_}}


def test_breaker_utilization_counts_gpu_nodes_only_as_nvsentinel_does():
    nodes = [
        _node("g0", True, True),
        _node("g1", True, False),
        _node("g2", True, False),
        _node("g3", True, False),
        _node("c0", False, True),
    ]
    assert breaker_utilization(nodes) == 0.25
    assert cordoned(nodes) == 2
    assert breaker_utilization([_node("c0", False, True)]) is None


def test_evaluator_fires_the_first_condition_that_held():
    evaluator = Evaluator(parse_conditions("availability<0.5 for 2s; cordoned>0"))
    down = [_record(False, 1.0)]
    nodes = [_node("g0", True, False)]
    assert evaluator.step(0, Snapshot(down, nodes, {})) is None
    assert evaluator.step(1, Snapshot(down, nodes, {})) is None
    fired = evaluator.step(2, Snapshot(down, nodes, {}))
    assert fired is not None and fired.condition.text == "availability<0.5 for 2s" and fired.held_s == 2 and fired.value == 0.0
    promql = Evaluator(parse_conditions("promql:up == 0 for 1s"))
    assert promql.step(0, Snapshot([], None, {"up == 0": 1})) is None
    assert promql.step(1, Snapshot([], None, {"up == 0": None})) is None  # Prometheus did not answer
    assert promql.step(2, Snapshot([], None, {"up == 0": 2})).value == 2
