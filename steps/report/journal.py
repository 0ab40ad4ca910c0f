"""The run's journal: timeline, phases, figures and checks, and the verdict that follows from them.

One testcase per check. Checks come from three places: every `check_passed`/`check_failed` and
`step_finished` event any step emitted, the report's own inference checks (records present,
baseline healthy, fault injected, recovered, and the optional recovery-time / availability /
detection bounds), and the PromQL probes (`steps.report.probes`). The verdict fails when any check
failed. The resilience score (`steps.report.score`) is computed last, from the report itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from steps.event_names import TIMELINE_LABELS, EventName, Phase
from steps.events import Event
from steps.report.cleanup import before, cleanup_figures, restore_time
from steps.report.consumers import consumer_summary
from steps.report.inputs import Inputs
from steps.report.nvsentinel import nvsentinel_summary
from steps.report.nvsentinel_mttr import apply_dedup, nvsentinel_mttr, run_window
from steps.report.phases import boundaries
from steps.report.score import resilience_score
from steps.report.stats import PhaseStats, RunFigures, final_window_ok, phase_stats, run_figures, series

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass(frozen=True)
class Criteria:
    threshold: float = 0.9
    window: int = 10
    expect_fault: bool = True
    max_recovery_s: float | None = None
    max_detection_s: float | None = None
    min_availability: float | None = None
    expect_workload_reached: bool = False  # gpu-fault, cuda-only: the workers must have seen failing CUDA calls


@dataclass(frozen=True)
class Check:
    classname: str
    name: str
    status: str
    reason: str | None = None
    time: float | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.1f}s"


def step_checks(events: list[Event]) -> list[Check]:
    """Checks reported by steps; a retried step's last word counts."""
    latest: dict[tuple[str, str], Check] = {}
    for event in events:
        if event.event in (EventName.CHECK_PASSED, EventName.CHECK_FAILED):
            name = str(event.fields.get("check") or "check")
            failed = event.event == EventName.CHECK_FAILED
            reason = str(event.fields.get("reason") or "failed") if failed else None
            latest[(event.step, name)] = Check(event.step, name, FAILED if failed else PASSED, reason, event.time)
        elif event.event == EventName.STEP_FINISHED:
            code = event.fields.get("exit_code")
            failed = code not in (0, None)
            reason = f"{event.step} exited {code}" if failed else None
            latest[(event.step, "exit_code")] = Check(event.step, "exit_code", FAILED if failed else PASSED, reason, event.time)
    return list(latest.values())


def reach_check(events: list[Event]) -> Check:
    """Required for the CUDA scenarios: some worker on the target node logged the shim injecting the
    XID (a `fault_reached_workload` event with a non-empty `reached`). Without it a passing run may
    only mean the fault missed the workload (the `recovered` check passes when nothing failed)."""
    FAULT_REACHED = EventName.FAULT_REACHED_WORKLOAD

    seen = [e for e in events if e.event == FAULT_REACHED]
    hit = next((e for e in seen if e.fields.get("reached")), None)
    if hit is not None:
        return Check("scenario", FAULT_REACHED, PASSED, None, hit.time)
    if not seen:
        return Check("scenario", FAULT_REACHED, FAILED, f"no {FAULT_REACHED} event: nobody looked at the workers' logs")
    last = seen[-1].fields
    return Check(
        "scenario",
        FAULT_REACHED,
        FAILED,
        f"no worker on node {last.get('node')} logged failing CUDA calls for XID {last.get('xid')} "
        f"({len(last.get('read') or [])} of {last.get('workers')} worker logs read)",
        seen[-1].time,
    )


def inference_checks(inputs: Inputs, phases: list[PhaseStats], figures: RunFigures, criteria: Criteria) -> list[Check]:
    c = criteria
    checks = []
    n = len(inputs.columns)
    checks.append(
        Check(
            "inference",
            "records_present",
            PASSED if n else FAILED,
            None if n else "no inference records: was the load step running and its records passed to the report?",
        )
    )
    baseline = next((p for p in phases if p.name == Phase.BASELINE), None)
    if baseline is None or not baseline.requests:
        checks.append(Check("inference", "baseline_success_rate", SKIPPED, "no requests before the fault"))
    else:
        good = baseline.success_rate >= c.threshold - 1e-9
        checks.append(
            Check(
                "inference",
                "baseline_success_rate",
                PASSED if good else FAILED,
                None if good else f"baseline success rate {baseline.success_rate:.1%} below {c.threshold:.0%}",
            )
        )
    if c.expect_fault:
        injected = figures.fault_time is not None
        checks.append(
            Check(
                "scenario",
                "fault_injected",
                PASSED if injected else FAILED,
                None if injected else f"no {EventName.FAULT_INJECTED} event: the fault was never injected",
            )
        )
    if c.expect_workload_reached:
        checks.append(reach_check(inputs.events))
    if n:
        if figures.impact_observed and figures.recovered is None:
            reason = (
                f"inference did not recover: no sustained window of {c.window} requests at >= {c.threshold:.0%} after the first failure"
            )
        elif not figures.final_window_ok:
            reason = f"the last {c.window} requests are below {c.threshold:.0%} success"
        else:
            reason = None
        checks.append(Check("inference", "recovered", FAILED if reason else PASSED, reason))
    if c.max_recovery_s is not None:
        if not figures.impact_observed:
            checks.append(Check("inference", "recovery_time", PASSED))
        elif figures.time_to_recovery_s is None:
            checks.append(Check("inference", "recovery_time", FAILED, "inference never recovered"))
        else:
            good = figures.time_to_recovery_s <= c.max_recovery_s
            checks.append(
                Check(
                    "inference",
                    "recovery_time",
                    PASSED if good else FAILED,
                    None if good else f"recovered after {_fmt(figures.time_to_recovery_s)}, limit {c.max_recovery_s:g}s",
                )
            )
    if c.min_availability is not None:
        a = figures.availability_during_fault
        if a is None:
            checks.append(Check("inference", "availability_during_fault", FAILED, "no requests during the fault"))
        else:
            good = a >= c.min_availability - 1e-9
            checks.append(
                Check(
                    "inference",
                    "availability_during_fault",
                    PASSED if good else FAILED,
                    None if good else f"availability during the fault {a:.1%} below {c.min_availability:.0%}",
                )
            )
    if c.max_detection_s is not None:
        d = figures.detection_s
        good = d is not None and d <= c.max_detection_s
        reason = (
            "the XID was never detected (no xid_detected/node_cordoned event)"
            if d is None
            else f"detected after {_fmt(d)}, limit {c.max_detection_s:g}s"
        )
        checks.append(Check("platform", "detection_time", PASSED if good else FAILED, None if good else reason))
    return checks


def timeline(events: list[Event], figures: RunFigures, origin: float) -> list[dict]:
    entries = [{"time": e.time, "step": e.step, "event": e.event, **e.fields} for e in events]
    derived = [
        (figures.first_failure, EventName.FIRST_FAILED_REQUEST),
        (figures.first_success_after_failure, EventName.FIRST_SUCCESS_AFTER_FAILURE),
        (figures.recovered, EventName.RECOVERED),
    ]
    entries += [{"time": t, "step": "report", "event": name} for t, name in derived if t is not None]
    entries.sort(key=lambda e: e["time"])
    for entry in entries:
        entry["t"] = round(entry["time"] - origin, 3)
        label = TIMELINE_LABELS.get(entry["event"])
        if label:
            entry["label"] = label + _kind_suffix(entry)
    return entries


def _kind_suffix(entry: dict) -> str:
    """What kind of fault an injection was: one scenario injects several at once (gpu-fault: the CUDA
    errors and the kernel-log XID), and two bare "fault injected" lines read as a duplicate."""
    if entry["event"] == EventName.CONSUMER_DETECTED and entry.get("consumer"):
        return f": {entry['consumer']} ({entry.get('check')})"
    kind = entry.get("kind")
    if entry["event"] != EventName.FAULT_INJECTED or not kind:
        return ""
    return f": {kind} {entry['xid']}" if kind == "xid" and entry.get("xid") is not None else f": {kind}"


def probe_checks(prometheus, probes: list, at: float) -> list[Check]:
    """The PromQL probes (`steps.report.probes`), each one check evaluated at `at`."""
    from steps.report.probes import CLASSNAME, evaluate

    results = [evaluate(prometheus, probe, at) for probe in probes]
    return [Check(CLASSNAME, r.probe.name, PASSED if r.passed else FAILED, r.reason, r.at) for r in results]


def build_report(
    inputs: Inputs,
    criteria: Criteria,
    scenario: str,
    run_id: str | None,
    prometheus=None,
    probes: list | tuple = (),
    probe_at_run_end: bool = False,
) -> dict:
    """`prometheus` (a `steps.report.prometheus.PrometheusApi`): where NVSentinel's metrics are read and
    the `probes` (`steps.report.probes.Probe`) evaluated: at the report's time, or at the run's end."""
    columns = inputs.columns
    starts = [e.time for e in inputs.events] + ([float(columns.start[0])] if len(columns) else [])
    ends = [e.time for e in inputs.events] + ([float(columns.end.max())] if len(columns) else [])
    origin = min(starts) if starts else time.time()
    run_end = max(ends) if ends else origin
    bounds = boundaries(inputs.events)
    phases = phase_stats(columns, bounds, run_end, criteria.window, criteria.threshold)
    # The fault's figures stop at our own restore (issue 15 item 14); what followed it is reported apart.
    cut = restore_time(inputs.events)
    figures = run_figures(before(columns, cut), inputs.events, bounds, min(run_end, cut or run_end), criteria.window, criteria.threshold)
    ours = cleanup_figures(columns, cut, criteria.window, criteria.threshold)
    # The run ends healthy only if the last window of the whole run (after our cleanup too) is.
    figures = replace(figures, final_window_ok=final_window_ok(columns, criteria.window, criteria.threshold))
    checks = step_checks(inputs.events) + inference_checks(inputs, phases, figures, criteria)
    if probes:
        checks += probe_checks(prometheus, list(probes), run_end if probe_at_run_end else time.time())
    verdict = FAILED if any(c.status == FAILED for c in checks) else PASSED
    summary = nvsentinel_summary(inputs.events)
    mttr = None
    if prometheus is not None:
        xid = next(
            (e.fields.get("xid") for e in inputs.events if e.event == EventName.FAULT_INJECTED and e.fields.get("kind") == "xid"), None
        )
        code = (summary or {}).get("expected_error_code") or (str(xid) if xid is not None else None)
        mttr = nvsentinel_mttr(prometheus, inputs.events, run_window(inputs.events, origin, run_end, time.time(), code))
        summary = apply_dedup(summary, mttr, inputs.events)
    report = {
        "scenario": scenario,
        "run_id": run_id,
        "generated_at": time.time(),
        "verdict": verdict,
        "origin": origin,
        "duration_s": run_end - origin,
        "criteria": dict(criteria.__dict__),
        "inputs": {
            "files": inputs.files,
            "events": len(inputs.events),
            "requests": len(columns),
            "cancelled_requests": columns.cancelled,
            "ignored_lines": inputs.ignored_lines,
            "duplicate_files": inputs.duplicate_files,
            "duplicate_events": inputs.duplicate_events,
        },
        "figures": {**figures.as_dict(), **ours.as_dict()},
        "phases": [p.as_dict() for p in phases],
        "checks": [c.as_dict() for c in checks],
        "timeline": timeline(inputs.events, figures, origin),
        "nvsentinel": summary,
        "consumers": consumer_summary(inputs.events),
        "nvsentinel_mttr": mttr,
        # The abort watcher's stop condition, when one fired (issue 18): the run was stopped on purpose.
        "aborted": next((str(e.fields.get("condition")) for e in inputs.events if e.event == EventName.ABORTED), None),
        "series": series(columns, origin, run_end).as_dict(),
    }
    report["resilience_score"] = resilience_score(report).as_dict()
    return report
