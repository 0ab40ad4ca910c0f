"""compare.png: the runs of a `report compare` overlaid on one time axis, aligned at fault injection.

Top: success rate of each run, bottom: its p99 latency (the report's own `series`, drawn as timeline.png
draws them). x = 0 is each run's first `fault_injected`; a run without one is aligned at its start (the
legend says so). Each run's sustained recovery is a dotted line in its colour.
"""

from __future__ import annotations

from pathlib import Path

from steps.event_names import EventName
from steps.report.compare import Run
from steps.report.plot import DPI, EVENT_COLOURS, HEIGHT_IN, WIDTH_IN, series_points

RUN_COLOURS = ("#1565c0", "#e65100", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457")


def _alignment(run: Run) -> tuple[float, str]:
    """Seconds from the run's origin to its fault (the x-axis zero), and the legend's note."""
    f = run.report["figures"]
    if f.get("fault_time") is None:
        return 0.0, " (no fault: aligned at its start)"
    return f["fault_time"] - run.report["origin"], ""


def _present(t: list[float], values: list) -> tuple[list[float], list[float]]:
    kept = [(x, v) for x, v in zip(t, values) if v is not None and v == v]  # v == v: not NaN
    return [x for x, _ in kept], [v for _, v in kept]


def write_overlay(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display in a step container
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, gridspec_kw={"height_ratios": [3, 2]})
    try:
        for i, run in enumerate(runs):
            colour = RUN_COLOURS[i % len(RUN_COLOURS)]
            shift, note = _alignment(run)
            t, rate, _, p99 = series_points(run.report["series"], shift)
            name = f"{run.label}: {run.report.get('run_id') or run.source}{note}"
            # Empty buckets are skipped, not gaps: with sparse load most fine buckets hold no request.
            top.plot(*_present(t, rate), color=colour, linewidth=1.8, marker=".", markersize=3, label=name)
            bottom.plot(*_present(t, p99), color=colour, linewidth=1.2, marker=".", markersize=3, label=f"{run.label} p99")
            recovered = run.report["figures"].get("recovered")
            if recovered is not None:
                at = recovered - run.report["origin"] - shift
                for ax in (top, bottom):
                    ax.axvline(at, color=colour, linewidth=1.0, linestyle=":")
        for ax in (top, bottom):
            ax.axvline(0, color=EVENT_COLOURS[EventName.FAULT_INJECTED], linewidth=1.2)
            ax.grid(alpha=0.3)
        top.text(0, 104, " fault injected", color=EVENT_COLOURS[EventName.FAULT_INJECTED], fontsize=9, va="bottom")
        top.axhline(100 * runs[0].report["criteria"]["threshold"], color="#757575", linestyle=":", linewidth=1)
        top.set_ylim(-3, 112)
        top.set_ylabel("success rate %")
        top.set_title("report compare: " + " vs ".join(r.label for r in runs) + " (dotted: recovered)", fontsize=13, fontweight="bold")
        top.legend(loc="lower right", fontsize=9, framealpha=0.9)
        bottom.set_ylabel("p99 of successful requests (ms)")
        bottom.set_xlabel("seconds since fault injection")
        bottom.set_ylim(bottom=0)
        bottom.legend(loc="upper left", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
