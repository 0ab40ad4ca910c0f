"""Stop conditions (`abort-if`): their syntax, parsed strictly.

A scenario's `abort-if` parameter holds conditions separated by `;` (or new lines):

    availability<0.5 for 5s; p99>2000ms for 10s; promql:sum(up{job="dynamo"}) < 1 for 30s; breaker>0.3; cordoned>1

| condition | sample, taken once per interval |
|---|---|
| `availability<X` | success ratio of the watcher's own probe requests that completed in the interval (0 ≤ X ≤ 1) |
| `p99>Nms` / `p99>Ns` | 99th percentile latency of those probes, failed ones included (a hang counts at its timeout) |
| `promql:<expr>` | true when the instant query returns at least one sample (Prometheus' alerting-rule rule) |
| `breaker>F` | NVSentinel's circuit-breaker utilization: cordoned GPU nodes / GPU nodes (`nvidia.com/gpu.present=true`), 0 ≤ F ≤ 1 |
| `cordoned>N` | nodes cordoned (`spec.unschedulable`), any node, N ≥ 0 |

`for Ys` (`ms`, `s`, `m`, `h`; optional, default 0): the condition fires once it has held at every
sample for at least Y seconds — Prometheus' `for` semantics. A sample where it does not hold resets
it, so a flapping condition never fires; an interval without data (no probe completed, Prometheus did
not answer) neither holds nor resets. Comparisons `<`, `<=`, `>`, `>=` are accepted for availability,
p99, breaker and cordoned (a promql condition carries its comparison inside the expression).

Anything else is refused whole (`BadInput`, one line naming the condition): the run is refused before
anything is injected.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from steps.errors import BadInput

MAX_FOR_S = 24 * 3600.0
_FOR = re.compile(r"^(?P<body>.*?)\s+for\s+(?P<duration>\S+)$", re.DOTALL)
_COMPARISON = re.compile(r"^(?P<metric>[a-z0-9]+)\s*(?P<op><=|>=|<|>)\s*(?P<value>[^\s]+)$")
_NUMBER_UNIT = re.compile(r"^(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
PROMQL_PREFIX = "promql:"


class Metric(enum.StrEnum):
    AVAILABILITY = "availability"
    P99 = "p99"
    PROMQL = "promql"
    BREAKER = "breaker"
    CORDONED = "cordoned"


class Op(enum.StrEnum):
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    def holds(self, value: float, threshold: float) -> bool:
        if self is Op.LT:
            return value < threshold
        if self is Op.LE:
            return value <= threshold
        if self is Op.GT:
            return value > threshold
        return value >= threshold


@dataclass(frozen=True)
class Condition:
    """One stop condition. `threshold` is seconds for p99, a fraction for availability and breaker, a
    count for cordoned; unused (0) for promql, whose `expr` carries the test."""

    text: str  # as the user wrote it (whitespace normalised): what the report prints after `aborted:`
    metric: Metric
    op: Op | None = None
    threshold: float = 0.0
    expr: str = ""
    for_s: float = 0.0

    def holds(self, value: float) -> bool:
        """Whether one sample satisfies the condition (promql: value is the number of samples returned)."""
        if self.metric is Metric.PROMQL:
            return value > 0
        assert self.op is not None
        return self.op.holds(value, self.threshold)


def parse_duration(text: str, what: str) -> float:
    found = _NUMBER_UNIT.match(text)
    if not found or not found.group("unit"):
        raise BadInput(f"{what}: {text!r} is not a duration (e.g. 500ms, 5s, 2m, 1h)")
    seconds = float(found.group("number")) * _UNIT_S[found.group("unit")]
    if not 0 < seconds <= MAX_FOR_S:
        raise BadInput(f"{what}: {text!r} must be more than 0 and at most 24h")
    return seconds


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadInput(f"{what}: {text!r} is not a finite number")
    return value


def parse_condition(text: str) -> Condition:
    """One condition (see the module docstring); BadInput naming it when malformed."""
    normalised = " ".join(text.split())
    what = f"abort-if condition {normalised!r}"
    body, for_s = normalised, 0.0
    found = _FOR.match(normalised)
    if found:
        body, for_s = found.group("body").strip(), parse_duration(found.group("duration"), what)
    if body.startswith(PROMQL_PREFIX):
        expr = body[len(PROMQL_PREFIX) :].strip()
        if not expr:
            raise BadInput(f'{what}: promql: needs an expression, e.g. promql:up{{job="dynamo"}} == 0 for 30s')
        if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}") or expr.count('"') % 2:
            raise BadInput(f"{what}: the PromQL expression has unbalanced brackets or quotes")
        return Condition(normalised, Metric.PROMQL, expr=expr, for_s=for_s)
    match = _COMPARISON.match(body)
    if not match:
        raise BadInput(
            f"{what}: expected <metric><op><value> [for <duration>] with metric availability, p99, breaker, cordoned "
            "or promql:<expr>, e.g. availability<0.5 for 5s"
        )
    try:
        metric = Metric(match.group("metric"))
    except ValueError:
        raise BadInput(f"{what}: unknown metric {match.group('metric')!r} (availability, p99, breaker, cordoned, promql:<expr>)") from None
    if metric is Metric.PROMQL:
        raise BadInput(f"{what}: write promql:<expr>, with the comparison inside the expression")
    op, raw = Op(match.group("op")), match.group("value")
    if metric is Metric.P99:
        unit = _NUMBER_UNIT.match(raw)
        if not unit or unit.group("unit") not in ("ms", "s"):
            raise BadInput(f"{what}: p99 needs a latency with its unit, e.g. p99>2000ms or p99>2s")
        threshold = float(unit.group("number")) * _UNIT_S[unit.group("unit")]
    else:
        threshold = _number(raw, what)
    if metric in (Metric.AVAILABILITY, Metric.BREAKER) and not 0 <= threshold <= 1:
        raise BadInput(f"{what}: {metric} is a fraction between 0 and 1")
    if metric is Metric.CORDONED and (threshold < 0 or threshold != int(threshold)):
        raise BadInput(f"{what}: cordoned counts nodes: a whole number ≥ 0")
    return Condition(normalised, metric, op, threshold, for_s=for_s)


def parse_conditions(text: str) -> tuple[Condition, ...]:
    """Every condition of an `abort-if` value (`;` or new lines between them); empty: none."""
    if not text.strip():
        return ()
    items = re.split(r"[;\n]", text)
    if any(not item.strip() for item in items):
        raise BadInput(f"abort-if {' '.join(text.split())!r}: an empty condition (a stray ';'?)")
    return tuple(parse_condition(item) for item in items)


def check_sources(conditions: tuple[Condition, ...], prometheus_url: str) -> None:
    """A promql condition needs a Prometheus to ask: refused before anything is injected, not found out
    while the fault is live."""
    promql = [c.text for c in conditions if c.metric is Metric.PROMQL]
    if promql and not prometheus_url.strip():
        raise BadInput(f"abort-if {promql[0]!r} needs the prometheus-url parameter (a Prometheus to evaluate it)")
