"""Runs side by side: the figures of two or more reports, the deltas of each later run against the
first, and whether a later run regressed beyond a tolerance (`faultflow report compare`, a CI gate).

A run is a report.json, an outputs directory holding one, or a run's evidence directory (events and
records, as `faultflow step report --input` reads them: the report is built in memory with the default
criteria). A report written before the resilience score existed gets it computed (it depends on the
report alone).

Figures, which way is better, and the default tolerance (`--tolerance NAME=VALUE`: VALUE in the figure's
unit, e.g. `recovery=15` seconds or `availability=0.1`; or `N%`, relative to the first run's value):

| name | figure | better | default |
|---|---|---|---|
| detection | fault → XID detected / node cordoned | lower | 5 s |
| first_failure | fault → first failed request | (neither: shown, never a regression) | 5 s |
| recovery | fault → sustained recovery | lower | 10 s |
| availability | success rate during the fault | higher | 0.05 |
| p50, p99 | latency of successful requests, per phase | lower | 50% |
| score | resilience score (`steps.report.score`) | higher | 10 points |

"Never" (an XID never detected, inference never recovered) is worse than any time; a fault that never
broke inference (no failed request, the last window healthy) recovered in 0 s. A later run regresses
when a figure is worse than the first run's by more than its tolerance, or when a check that did not
fail in the first run fails in it. A figure one run lacks (no fault phase, no baseline) is shown and
never a regression.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from steps.errors import BadInput
from steps.report.score import resilience_score, xid_injected

NEVER = math.inf
REPORT_KEYS = ("figures", "phases", "checks", "series", "criteria", "timeline", "inputs")
PHASES = ("baseline", "fault", "remediation", "recovery")


class Better(str, Enum):
    LOWER = "lower"
    HIGHER = "higher"
    NEITHER = "neither"


class Unit(str, Enum):
    SECONDS = "s"
    FRACTION = "fraction"
    POINTS = "points"


@dataclass(frozen=True)
class Tolerance:
    amount: float
    relative: bool  # amount is a fraction of the first run's value

    def limit(self, reference: float) -> float:
        return self.amount * abs(reference) if self.relative else self.amount

    def text(self, unit: Unit) -> str:
        if self.relative:
            return f"{self.amount * 100:g}%"
        return f"{self.amount:g} s" if unit == Unit.SECONDS else f"{self.amount:g}"


@dataclass(frozen=True)
class Figure:
    name: str  # the tolerance's name
    label: str
    unit: Unit
    better: Better
    read: Callable[[dict], float | None]


def _never_if(value, never: bool) -> float | None:
    return NEVER if value is None and never else value


def _recovery(report: dict) -> float | None:
    f = report["figures"]
    if not f.get("impact_observed") and f.get("final_window_ok") and f.get("fault_time") is not None:
        return 0.0  # the fault never broke inference: nothing to recover from, the best a run can do
    return _never_if(f.get("time_to_recovery_s"), bool(f.get("impact_observed")))


def _detection(report: dict) -> float | None:
    return _never_if(report["figures"].get("detection_s"), xid_injected(report))


def _phase_latency(phase: str, q: str) -> Callable[[dict], float | None]:
    def read(report: dict) -> float | None:
        found = next((p for p in report["phases"] if p["name"] == phase), None)
        return None if found is None else found["latency"].get(q)

    return read


FIGURES: list[Figure] = [
    Figure("detection", "detection (XID seen / node cordoned)", Unit.SECONDS, Better.LOWER, _detection),
    Figure("first_failure", "time to first failure", Unit.SECONDS, Better.NEITHER, lambda r: r["figures"].get("time_to_first_failure_s")),
    Figure("recovery", "time to recovery", Unit.SECONDS, Better.LOWER, _recovery),
    Figure(
        "availability", "availability during fault", Unit.FRACTION, Better.HIGHER, lambda r: r["figures"].get("availability_during_fault")
    ),
    *(Figure(q, f"{phase} {q}", Unit.SECONDS, Better.LOWER, _phase_latency(phase, q)) for phase in PHASES for q in ("p50", "p99")),
    Figure("score", "resilience score", Unit.POINTS, Better.HIGHER, lambda r: r["resilience_score"]["score"]),
]
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "detection": Tolerance(5.0, False),
    "first_failure": Tolerance(5.0, False),
    "recovery": Tolerance(10.0, False),
    "availability": Tolerance(0.05, False),
    "p50": Tolerance(0.5, True),
    "p99": Tolerance(0.5, True),
    "score": Tolerance(10.0, False),
}


def parse_tolerances(specs: list[str] | tuple[str, ...]) -> dict[str, Tolerance]:
    """`NAME=VALUE` (VALUE a number in the figure's unit, an `s` suffix allowed, or `N%`) over the defaults."""
    chosen = dict(DEFAULT_TOLERANCES)
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name, raw = name.strip(), raw.strip()
        if not sep or name not in DEFAULT_TOLERANCES:
            raise BadInput(f"--tolerance {spec!r}: expected NAME=VALUE with NAME one of {', '.join(DEFAULT_TOLERANCES)}")
        relative = raw.endswith("%")
        number = raw[:-1] if relative else raw.removesuffix("s")
        try:
            amount = float(number)
        except ValueError:
            raise BadInput(f"--tolerance {spec!r}: {raw!r} is not a number, e.g. 10, 10s or 20%") from None
        if not math.isfinite(amount) or amount < 0:
            raise BadInput(f"--tolerance {spec!r}: must be a finite number >= 0")
        chosen[name] = Tolerance(amount / 100 if relative else amount, relative)
    return chosen


@dataclass(frozen=True)
class Run:
    label: str  # A, B, C, …
    source: str
    report: dict


def _is_report(data) -> bool:
    return isinstance(data, dict) and all(k in data for k in REPORT_KEYS) and isinstance(data.get("figures"), dict)


def _read_report(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise BadInput(f"{path}: cannot read: {error.strerror}") from None
    except ValueError:
        raise BadInput(f"{path}: not a report (not JSON)") from None
    if not _is_report(data):
        raise BadInput(f"{path}: not a report (no {', '.join(k for k in REPORT_KEYS if not isinstance(data, dict) or k not in data)})")
    return data


def _report_from_evidence(path: Path) -> dict:
    from steps.report.inputs import input_files, read_inputs
    from steps.report.journal import Criteria, build_report

    files = input_files([str(path)])
    inputs = read_inputs(files) if files else None
    if inputs is None or (not inputs.events and not len(inputs.columns)):
        raise BadInput(f"{path}: not a report, nor a directory with report.json or run evidence (events, records)")
    return build_report(inputs, Criteria(), "scenario", path.name)


def load_run(raw: str, label: str) -> Run:
    path = Path(raw)
    if path.is_dir():
        report = _read_report(path / "report.json") if (path / "report.json").is_file() else _report_from_evidence(path)
    elif path.is_file():
        report = _read_report(path)
    else:
        raise BadInput(f"{raw} does not exist")
    if "resilience_score" not in report:
        report = {**report, "resilience_score": resilience_score(report).as_dict()}
    return Run(label, raw, report)


def load_runs(paths: list[str] | tuple[str, ...]) -> list[Run]:
    if len(paths) < 2:
        raise BadInput(f"report compare needs two runs or more, got {len(paths)}")
    if len(paths) > len(string.ascii_uppercase):
        raise BadInput(f"report compare takes at most {len(string.ascii_uppercase)} runs")
    return [load_run(p, string.ascii_uppercase[i]) for i, p in enumerate(paths)]


class Flag(str, Enum):
    REGRESSED = "regressed"
    IMPROVED = "improved"
    CHANGED = "changed"  # past the tolerance, in a figure with no better direction


@dataclass
class Row:
    figure: Figure
    tolerance: Tolerance
    values: list[float | None]
    deltas: list[float | None] = field(default_factory=list)  # against the first run; first: None
    flags: list[Flag | None] = field(default_factory=list)


def _delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if math.isinf(a) or math.isinf(b):
        return 0.0 if a == b else (NEVER if math.isinf(b) else -NEVER)
    return b - a


def _flag(row: Row, a: float | None, b: float | None) -> Flag | None:
    delta = _delta(a, b)
    if delta is None or a is None:
        return None
    limit = row.tolerance.limit(a) if not math.isinf(a) else 0.0
    if abs(delta) <= limit + 1e-9:
        return None
    if row.figure.better == Better.NEITHER:
        return Flag.CHANGED
    worse = delta > 0 if row.figure.better == Better.LOWER else delta < 0
    return Flag.REGRESSED if worse else Flag.IMPROVED


def build_rows(runs: list[Run], tolerances: dict[str, Tolerance]) -> list[Row]:
    rows = []
    for figure in FIGURES:
        values = [figure.read(run.report) for run in runs]
        if all(v is None for v in values):
            continue  # a phase none of the runs had
        row = Row(figure, tolerances[figure.name], values)
        row.deltas = [None, *(_delta(values[0], v) for v in values[1:])]
        row.flags = [None, *(_flag(row, values[0], v) for v in values[1:])]
        rows.append(row)
    return rows


@dataclass(frozen=True)
class CheckRow:
    check: str
    statuses: list[str | None]  # None: the run has no such check
    flags: list[Flag | None]


def build_check_rows(runs: list[Run]) -> list[CheckRow]:
    names: list[str] = []
    by_run: list[dict[str, str]] = []
    for run in runs:
        found = {f"{c['classname']}.{c['name']}": c["status"] for c in run.report["checks"]}
        names += [n for n in found if n not in names]
        by_run.append(found)
    rows = []
    for name in names:
        statuses = [s.get(name) for s in by_run]
        first = statuses[0]
        flags: list[Flag | None] = [None]
        for status in statuses[1:]:
            if status == "failed" and first != "failed":
                flags.append(Flag.REGRESSED)
            elif first == "failed" and status == "passed":
                flags.append(Flag.IMPROVED)
            else:
                flags.append(None)
        rows.append(CheckRow(name, statuses, flags))
    return rows


@dataclass
class Comparison:
    runs: list[Run]
    rows: list[Row]
    checks: list[CheckRow]
    tolerances: dict[str, Tolerance]

    @property
    def regressions(self) -> list[str]:
        found = []
        for row in self.rows:
            for run, delta, flag in zip(self.runs[1:], row.deltas[1:], row.flags[1:]):
                if flag == Flag.REGRESSED:
                    found.append(
                        f"{run.label}: {row.figure.label} {format_delta(delta, row.figure.unit)} "
                        f"(tolerance {row.tolerance.text(row.figure.unit)})"
                    )
        for check in self.checks:
            for run, flag in zip(self.runs[1:], check.flags[1:]):
                if flag == Flag.REGRESSED:
                    found.append(f"{run.label}: check {check.check} failed")
        return found

    def as_dict(self) -> dict:
        return {
            "baseline": self.runs[0].label,
            "runs": [
                {
                    "label": r.label,
                    "source": r.source,
                    "scenario": r.report.get("scenario"),
                    "run_id": r.report.get("run_id"),
                    "verdict": r.report.get("verdict"),
                    "fault_time": r.report["figures"].get("fault_time"),
                }
                for r in self.runs
            ],
            "tolerances": {name: {"amount": t.amount, "relative": t.relative} for name, t in self.tolerances.items()},
            "figures": [
                {
                    "figure": row.figure.name,
                    "label": row.figure.label,
                    "unit": row.figure.unit.value,
                    "better": row.figure.better.value,
                    "values": [_json_number(v) for v in row.values],
                    "deltas": [_json_number(d) for d in row.deltas],
                    "flags": [None if f is None else f.value for f in row.flags],
                }
                for row in self.rows
            ],
            "checks": [
                {"check": c.check, "statuses": c.statuses, "flags": [None if f is None else f.value for f in c.flags]} for c in self.checks
            ],
            "regressions": self.regressions,
            "regressed": bool(self.regressions),
        }


def compare(runs: list[Run], tolerances: dict[str, Tolerance]) -> Comparison:
    return Comparison(runs, build_rows(runs, tolerances), build_check_rows(runs), tolerances)


def _json_number(value: float | None):
    """JSON has no infinity: "never" for an XID never detected or inference never recovered."""
    if value is None:
        return None
    if math.isinf(value):
        return "never" if value > 0 else "-never"
    return value


def format_value(value: float | None, unit: Unit) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "never"
    if unit == Unit.FRACTION:
        return f"{value:.1%}"
    if unit == Unit.POINTS:
        return f"{value:.1f}"
    if value == 0:
        return "0 s"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def format_delta(delta: float | None, unit: Unit) -> str:
    if delta is None:
        return "–"
    if delta == 0:
        return "0"
    if math.isinf(delta):
        return "never" if delta > 0 else "now finite"
    if unit == Unit.FRACTION:
        return f"{delta * 100:+.1f} pp"
    if unit == Unit.POINTS:
        return f"{delta:+.1f}"
    return f"{delta * 1000:+.0f} ms" if abs(delta) < 1 else f"{delta:+.1f} s"


def render_markdown(comparison: Comparison) -> str:
    runs = comparison.runs
    regressions = comparison.regressions
    title = "REGRESSED" if regressions else "no regression beyond tolerance"
    lines = [f"# report compare: {title}", "", "| run | scenario | run id | verdict | source |", "|---|---|---|---|---|"]
    for r in runs:
        lines.append(
            f"| {r.label} | {r.report.get('scenario')} | {r.report.get('run_id') or '–'} | {r.report.get('verdict')} | {r.source} |"
        )
    head = ["figure", runs[0].label]  # then per later run: its value and its delta to the first
    for r in runs[1:]:
        head += [r.label, f"Δ {r.label}−{runs[0].label}"]
    lines += ["", "| " + " | ".join([*head, "better, tolerance"]) + " |", "|---|" + "---:|" * (len(head) - 1) + "---|"]
    for row in comparison.rows:
        unit = row.figure.unit
        cells = [row.figure.label, format_value(row.values[0], unit)]
        for value, delta, flag in zip(row.values[1:], row.deltas[1:], row.flags[1:]):
            shown = format_delta(delta, unit)
            cells += [format_value(value, unit), f"**{shown} {flag.value.upper()}**" if flag == Flag.REGRESSED else _mark(shown, flag)]
        lines.append("| " + " | ".join([*cells, _rule(row)]) + " |")
    counted = [[c.statuses[i] for c in comparison.checks if c.statuses[i] in ("passed", "failed")] for i in range(len(runs))]
    passed = [f"{sum(s == 'passed' for s in c)}/{len(c)}" for c in counted]
    cells = ["checks passed", passed[0]]
    for i in range(1, len(runs)):
        cells += [passed[i], ""]
    lines.append("| " + " | ".join([*cells, "a check failing that did not fail in A regresses"]) + " |")
    differing = [c for c in comparison.checks if len(set(c.statuses)) > 1]
    if differing:
        lines += ["", "Checks that differ:", ""]
        for c in differing:
            statuses = ", ".join(f"{r.label} {s or 'absent'}" for r, s in zip(runs, c.statuses))
            flagged = [f"{r.label} {f.value}" for r, f in zip(runs[1:], c.flags[1:]) if f is not None]
            lines.append(f"- `{c.check}`: {statuses}" + (f" ({', '.join(flagged)})" if flagged else ""))
    if regressions:
        lines += ["", "Regressions:", ""] + [f"- {r}" for r in regressions]
    return "\n".join(lines) + "\n"


def _rule(row: Row) -> str:
    tolerance = row.tolerance.text(row.figure.unit)
    if row.figure.better == Better.NEITHER:
        return f"shown only, {tolerance}"
    return f"{row.figure.better.value}, {tolerance}"


def _mark(shown: str, flag: Flag | None) -> str:
    return shown if flag is None else f"{shown} ({flag.value})"
