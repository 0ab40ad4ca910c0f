"""PromQL probes: `--check 'promql:<expr> <op> <value>'` — a team asserts NVSentinel's or Dynamo's own
metrics in the report, and a failed probe fails the verdict (exit 1) like any other check.

A probe is one instant query against `--prometheus-url` (`GET /api/v1/query`), evaluated at the report's
time (when the report is built) or, with `--probe-time run-end`, at the run's last event or record (a
report rebuilt later then reads the same moment; Prometheus' 5-minute lookback still applies). The
expression must give exactly one number: one series (aggregate with `sum(...)`, `max(...)` when several
may exist) or a scalar. Its value is compared with `<op> <value>`; `==` and `!=` compare exactly.

A probe never crashes the report: no series, several series, a Prometheus that does not answer or
refuses the expression — each is a failed check whose reason says which. Only a malformed check string
is bad input (exit 2, nothing written), found before anything is read.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from steps.errors import BadInput
from steps.report.prometheus import PrometheusApi, PrometheusError

KIND = "promql"
CLASSNAME = "promql"


class Op(str, Enum):
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "=="
    NE = "!="

    @property
    def holds(self) -> Callable[[float, float], bool]:
        return _OPERATORS[self]


_OPERATORS = {
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}


class ProbeTime(str, Enum):
    REPORT = "report"  # when the report is built
    RUN_END = "run-end"  # the run's last event or record


# The comparison is the LAST operator of the string followed by nothing but a number, so an expression
# may hold comparisons of its own (`sum(up == 1) >= 2`). Two-character operators are tried first.
_TAIL = re.compile(r"^(?P<expr>.*?\S)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Probe:
    expr: str
    op: Op
    value: float

    @property
    def name(self) -> str:
        """The check's name in report.json and JUnit: the probe as written, normalised."""
        return f"{self.expr} {self.op.value} {self.value:g}"


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    passed: bool
    reason: str | None
    observed: float | None
    at: float


def parse_check(text: str) -> Probe:
    """`promql:<expr> <op> <value>` → Probe; BadInput (one line) for anything else."""
    kind, sep, body = text.partition(":")
    if not sep or kind.strip() != KIND:
        raise BadInput(f"--check {text!r}: unknown kind; expected 'promql:<expr> <op> <value>'")
    if "\n" in body:
        raise BadInput(f"--check {text!r}: one line only")
    found = _TAIL.match(body)
    if found is None:
        raise BadInput(f"--check {text!r}: expected 'promql:<expr> <op> <value>' with op one of < <= > >= == != and a number")
    expr = found["expr"].strip()
    if expr.endswith(("<", ">", "=", "!")):  # `x >== 1`, `x <> 1`: an operator glued to ours
        raise BadInput(f"--check {text!r}: the comparison operator is malformed")
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}") or expr.count("[") != expr.count("]"):
        raise BadInput(f"--check {text!r}: unbalanced brackets in the expression {expr!r}")
    return Probe(expr=expr, op=Op(found["op"]), value=float(found["value"]))


def parse_checks(texts: list[str] | tuple[str, ...]) -> list[Probe]:
    return [parse_check(t) for t in texts]


def evaluate(api: PrometheusApi, probe: Probe, at: float) -> ProbeResult:
    try:
        samples = api.query(probe.expr, at)
    except PrometheusError as error:
        return ProbeResult(probe, False, f"no answer: {error}", None, at)
    if not samples:
        return ProbeResult(probe, False, f"{probe.expr!r} returned no series at {at:.0f}", None, at)
    if len(samples) > 1:
        shown = ", ".join(_labels(s.labels) for s in samples[:3]) + (", …" if len(samples) > 3 else "")
        return ProbeResult(
            probe, False, f"{probe.expr!r} returned {len(samples)} series ({shown}): aggregate it to one, e.g. sum(...)", None, at
        )
    value = samples[0].value
    if probe.op.holds(value, probe.value):
        return ProbeResult(probe, True, None, value, at)
    return ProbeResult(probe, False, f"{probe.expr} = {value:g}, expected {probe.op.value} {probe.value:g}", value, at)


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
