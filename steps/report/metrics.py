"""Figures for Prometheus: a `metrics.prom` text file (node-exporter textfile format) and one file per
figure under `metrics/` for Argo (`outputs.parameters[].valueFrom.path` → `spec.metrics.prometheus`).

A figure that was not measured (no fault, never recovered) is written as NaN, which both Prometheus and
Go's ParseFloat (Argo) accept; `faultflow_run_passed` and `faultflow_recovered` say why.
"""

from __future__ import annotations

import math
from pathlib import Path

# name → (help, where in the report)
GAUGES: dict[str, tuple[str, str]] = {
    "recovery_seconds": ("Seconds from fault injection to sustained inference recovery.", "time_to_recovery_s"),
    "detection_seconds": ("Seconds from fault injection to NVSentinel detection (XID seen or node cordoned).", "detection_s"),
    "time_to_first_failure_seconds": ("Seconds from fault injection to the first failed request.", "time_to_first_failure_s"),
    "availability_during_fault": ("Success ratio of requests sent between fault injection and recovery.", "availability_during_fault"),
    "cleanup_disruption_seconds": (
        "Seconds from faultflow's own workload restore until inference met the threshold again (0: nothing failed).",
        "cleanup_disruption_seconds",
    ),
}


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def figures_for_export(report: dict) -> dict[str, float]:
    figures = report["figures"]
    values = {name: _number(figures.get(key)) for name, (_, key) in GAUGES.items()}
    values["recovered"] = (
        1.0 if figures.get("recovered") is not None or (not figures.get("impact_observed") and figures.get("final_window_ok")) else 0.0
    )
    values["run_passed"] = 1.0 if report["verdict"] == "passed" else 0.0
    values["checks_failed"] = float(sum(1 for c in report["checks"] if c["status"] == "failed"))
    values["requests"] = float(report["inputs"]["requests"])
    values["resilience_score"] = _number((report.get("resilience_score") or {}).get("score"))
    return values


def _text(value: float) -> str:
    return "NaN" if math.isnan(value) else repr(round(value, 6))


def write_metrics(report: dict, outputs: Path) -> dict[str, float]:
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    values = figures_for_export(report)
    folder = outputs / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    helps = {name: text for name, (text, _) in GAUGES.items()}
    helps.update(
        recovered="1 when inference recovered (or never failed) by the end of the run.",
        run_passed="1 when every check of the run passed.",
        checks_failed="Number of failed checks.",
        requests="Inference requests completed during the run.",
        resilience_score="The run's resilience score, 0-100 (weights: steps.report.score).",
    )
    for name, value in values.items():
        gauge = Gauge(f"faultflow_{name}", helps[name], ["scenario"], registry=registry)
        gauge.labels(scenario=report["scenario"]).set(value)
        (folder / name).write_text(_text(value) + "\n")
    (folder / "verdict").write_text(report["verdict"] + "\n")
    write_to_textfile(str(outputs / "metrics.prom"), registry)
    return values
