"""The resilience score: one number 0–100 per run, with its breakdown, computed from report.json alone
(the same report gives the same score, whenever and wherever it is computed: `report compare` recomputes
it for a report written before the score existed).

Components and their weights (points out of 100):

| component | weight | points |
|---|---:|---|
| availability | 40 | 40 × the success rate of requests during the fault (`availability_during_fault`) |
| recovery | 30 | 30 × R / (R + time to recovery); R = `--max-recovery-seconds`, else 120 s. Never recovered: 0 |
| detection | 10 | 10 × D / (D + detection); D = `--max-detection-seconds`, else 30 s. An XID injected and never detected: 0 |
| latency | 10 | 10 × min(1, baseline p99 / worst p99 of the fault and remediation phases) |
| checks | 10 | 10 × passed / (passed + failed) checks, each check's share listed (skipped checks count for nothing) |

R/(R+t) halves the points when the figure equals its reference and never quite reaches zero: a slower
recovery always scores lower, a recovery at the limit still scores half.

Not applicable (no weight, the score is the points over the weights that apply, × 100): detection when no
XID was injected (cuda-only, network scenarios) and nothing was detected; latency without a baseline p99
or without successful requests during the fault; availability when no request was sent during the
fault. A fault that never reached inference (no failed request, the last window healthy) has nothing to
recover from: recovery scores full. Whether the fault missed the workload is a check's business
(`fault_reached_workload`), which then fails and caps the score.

Caps, in order:
- an aborted run (a stop condition fired: report `aborted`, or an `aborted` event from watch-abort) scores 0: the
  run hurt more than allowed and was stopped before it could show recovery;
- a run without inference records scores 0: nothing was measured;
- any failed check caps the score at 50: a run that failed its gate is never a good run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from steps.event_names import EventName

WEIGHTS = {"availability": 40.0, "recovery": 30.0, "detection": 10.0, "latency": 10.0, "checks": 10.0}
RECOVERY_REFERENCE_S = 120.0
DETECTION_REFERENCE_S = 30.0
FAILED_CHECK_CAP = 50.0
WEIGHTS_VERSION = 1  # bump when a weight or a rule changes: scores of different versions do not compare


@dataclass(frozen=True)
class Component:
    name: str
    weight: float  # 0: not applicable
    points: float
    value: float | None  # the figure it was scored from
    basis: str  # how, in words


@dataclass(frozen=True)
class CheckShare:
    check: str
    status: str
    points: float


@dataclass
class Score:
    score: float
    uncapped: float
    cap: str | None  # why the score was capped, or None
    components: list[Component] = field(default_factory=list)
    checks: list[CheckShare] = field(default_factory=list)
    weights_version: int = WEIGHTS_VERSION

    def as_dict(self) -> dict:
        return asdict(self)


def _hyperbolic(reference: float, value: float) -> float:
    return reference / (reference + max(0.0, value))


def _availability(f: dict) -> Component:
    w = WEIGHTS["availability"]
    a = f.get("availability_during_fault")
    if a is None:
        return Component("availability", 0.0, 0.0, None, "no request during the fault: not applicable")
    return Component("availability", w, w * a, a, f"{w:g} × availability during the fault {a:.1%}")


def _recovery(f: dict, criteria: dict) -> Component:
    w = WEIGHTS["recovery"]
    reference = criteria.get("max_recovery_s") or RECOVERY_REFERENCE_S
    if not f.get("impact_observed"):
        if f.get("final_window_ok"):
            return Component("recovery", w, w, None, "inference never failed: nothing to recover from")
        return Component("recovery", w, 0.0, None, "the last window is below the threshold")
    t = f.get("time_to_recovery_s")
    if t is None:
        return Component("recovery", w, 0.0, None, "inference never recovered")
    return Component("recovery", w, w * _hyperbolic(reference, t), t, f"{w:g} × {reference:g}/({reference:g} + {t:.1f} s)")


def xid_injected(report: dict) -> bool:
    return any(
        e.get("event") == "fault_injected" and (e.get("kind") == "xid" or e.get("step") == "inject-xid")
        for e in report.get("timeline") or []
    )


def _detection(report: dict) -> Component:
    w = WEIGHTS["detection"]
    d = report["figures"].get("detection_s")
    reference = report.get("criteria", {}).get("max_detection_s") or DETECTION_REFERENCE_S
    if d is not None:
        return Component("detection", w, w * _hyperbolic(reference, d), d, f"{w:g} × {reference:g}/({reference:g} + {d:.1f} s)")
    if xid_injected(report):
        return Component("detection", w, 0.0, None, "an XID was injected and never detected")
    return Component("detection", 0.0, 0.0, None, "no XID injected: not applicable")


def _latency(report: dict) -> Component:
    w = WEIGHTS["latency"]
    phases = {p["name"]: p for p in report.get("phases") or []}
    base = (phases.get("baseline") or {}).get("latency", {}).get("p99")
    during = [p["latency"]["p99"] for name, p in phases.items() if name in ("fault", "remediation") and p["latency"].get("p99") is not None]
    if not base or not during:
        return Component("latency", 0.0, 0.0, None, "no baseline p99 or no successful request during the fault: not applicable")
    worst = max(during)
    ratio = min(1.0, base / worst) if worst > 0 else 1.0
    return Component("latency", w, w * ratio, worst, f"{w:g} × baseline p99 {base * 1000:.0f} ms / worst p99 {worst * 1000:.0f} ms")


def _checks(report: dict) -> tuple[Component, list[CheckShare]]:
    w = WEIGHTS["checks"]
    counted = [c for c in report.get("checks") or [] if c["status"] in ("passed", "failed")]
    share = w / len(counted) if counted else 0.0
    shares = [
        CheckShare(f"{c['classname']}.{c['name']}", c["status"], share if c["status"] == "passed" else 0.0)
        for c in report.get("checks") or []
    ]
    if not counted:
        return Component("checks", 0.0, 0.0, None, "no check passed or failed: not applicable"), shares
    passed = sum(1 for c in counted if c["status"] == "passed")
    return Component("checks", w, share * passed, passed / len(counted), f"{w:g} × {passed} of {len(counted)} checks passed"), shares


def aborted(report: dict) -> str | None:
    """Why the run was aborted (its stop condition), or None."""
    if report.get("aborted"):
        return str(report["aborted"])
    event = next((e for e in report.get("timeline") or [] if e.get("event") == EventName.ABORTED), None)
    if event is not None:
        return str(event.get("condition") or event.get("reason") or "a stop condition fired")
    return None


def resilience_score(report: dict) -> Score:
    f, criteria = report["figures"], report.get("criteria") or {}
    checks, shares = _checks(report)
    components = [_availability(f), _recovery(f, criteria), _detection(report), _latency(report), checks]
    weight = sum(c.weight for c in components)
    uncapped = round(100 * sum(c.points for c in components) / weight, 1) if weight else 0.0
    failed = [s.check for s in shares if s.status == "failed"]
    cap, score = None, uncapped
    why_aborted = aborted(report)
    if why_aborted is not None:
        cap, score = f"aborted: {why_aborted}", 0.0
    elif not (report.get("inputs") or {}).get("requests"):
        cap, score = "no inference records: nothing was measured", 0.0
    elif failed:
        cap, score = (
            f"{len(failed)} failed check(s) cap the score at {FAILED_CHECK_CAP:g}: {', '.join(failed)}",
            min(uncapped, FAILED_CHECK_CAP),
        )
    return Score(score=score, uncapped=uncapped, cap=cap, components=components, checks=shares)
