"""timeline.png: success rate and latency over time, phases shaded, events marked.

Read in a second: the top panel says whether inference worked (green when healthy, red where it
failed), the bottom one how fast, and the vertical lines say what happened when.
"""

from __future__ import annotations

from pathlib import Path

from steps.event_names import TIMELINE_LABELS, EventName, Phase

WIDTH_IN, HEIGHT_IN, DPI = 12.0, 7.0, 100  # 1200 x 700 pixels
PHASE_COLOURS = {
    Phase.BASELINE: "#e8f5e9",
    Phase.FAULT: "#ffebee",
    Phase.REMEDIATION: "#fff8e1",
    Phase.RECOVERY: "#e3f2fd",
}
EVENT_COLOURS = {
    EventName.FAULT_INJECTED: "#c62828",
    EventName.FIRST_FAILED_REQUEST: "#e53935",
    EventName.RECOVERED: "#2e7d32",
    EventName.FIRST_SUCCESS_AFTER_FAILURE: "#66bb6a",
}


def _title(report: dict) -> str:
    f = report["figures"]
    parts = [f"{report['scenario']}: {report['verdict'].upper()}"]
    if f["time_to_recovery_s"] is not None:
        parts.append(f"recovered in {f['time_to_recovery_s']:.1f} s")
    elif f["impact_observed"]:
        parts.append("NOT recovered")
    if f["detection_s"] is not None:
        parts.append(f"detected in {f['detection_s']:.1f} s")
    if f["availability_during_fault"] is not None:
        parts.append(f"availability during fault {f['availability_during_fault']:.0%}")
    return "  ·  ".join(parts)


def _grouped_events(timeline: list[dict], duration: float) -> list[tuple[float, list[str], str]]:
    """Marked events, those closer than 1.5% of the run merged into one line with a joined label. The
    short label (not the detailed one of the summary, "fault injected: xid 79"), so that a merged line
    stays inside the plot."""
    groups: list[tuple[float, list[str], str]] = []
    for e in (e for e in timeline if e["event"] in TIMELINE_LABELS):
        colour = EVENT_COLOURS.get(e["event"], "#37474f")
        label = TIMELINE_LABELS[e["event"]]
        if groups and e["t"] - groups[-1][0] < 0.015 * duration:
            if label not in groups[-1][1]:
                groups[-1][1].append(label)
            continue
        groups.append((e["t"], [label], colour))
    return groups


def series_points(s: dict, shift: float = 0.0) -> tuple[list[float], list[float | None], list[float], list[float]]:
    """The report's `series` as plotted: bucket middles (seconds from the origin, minus `shift`), success
    rate in %, p50 and p99 in ms (NaN where a bucket had no successful request). Also `report compare`'s."""
    t = [x + s["bucket_s"] / 2 - shift for x in s["t"]]
    rate = [None if r is None else 100 * r for r in s["success_rate"]]
    ms = lambda values: [float("nan") if v is None else v * 1000 for v in values]  # noqa: E731
    return t, rate, ms(s["p50"]), ms(s["p99"])


def write_timeline(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display in a step container
    import matplotlib.pyplot as plt

    s = report["series"]
    origin, duration = report["origin"], max(report["duration_s"], 1.0)
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, gridspec_kw={"height_ratios": [3, 2]})
    try:
        for p in report["phases"]:
            start, end = p["start"] - origin, p["end"] - origin
            for ax in (top, bottom):
                ax.axvspan(start, max(end, start), color=PHASE_COLOURS.get(p["name"], "#f5f5f5"), zorder=0)
            if end - start >= 0.08 * duration:  # narrow phases are named by the legend only
                top.text((start + end) / 2, 104, p["name"], ha="center", va="bottom", fontsize=10, color="#424242")

        t, rate, p50, p99 = series_points(s)
        top.plot(t, [float("nan") if r is None else r for r in rate], color="#1b5e20", linewidth=2, label="success rate")
        bad = [(x, r) for x, r in zip(t, rate) if r is not None and r < 100 * report["criteria"]["threshold"]]
        if bad:
            top.scatter([x for x, _ in bad], [r for _, r in bad], color="#c62828", s=14, zorder=3, label="below threshold")
        top.axhline(100 * report["criteria"]["threshold"], color="#757575", linestyle=":", linewidth=1)
        top.set_ylim(-3, 112)
        top.set_ylabel(f"success rate % (per {s['bucket_s']:g} s)")
        top.set_title(_title(report), fontsize=13, fontweight="bold", color="#b71c1c" if report["verdict"] == "failed" else "#1b5e20")

        bottom.plot(t, p50, color="#1565c0", linewidth=1.5, label="p50")
        bottom.plot(t, p99, color="#6a1b9a", linewidth=1.2, linestyle="--", label="p99")
        bottom.set_ylabel("latency of successful requests (ms)")
        bottom.set_xlabel("seconds since the run started")
        bottom.set_ylim(bottom=0)
        bottom.legend(loc="upper left", fontsize=9)

        for i, (at, labels, colour) in enumerate(_grouped_events(report["timeline"], duration)):
            for ax in (top, bottom):
                ax.axvline(at, color=colour, linewidth=1.2, linestyle="-" if ax is top else ":")
            # Alternate top and bottom so labels of neighbouring events never overwrite each other.
            y, va = (97, "top") if i % 2 == 0 else (3, "bottom")
            top.text(
                at,
                y,
                " " + " + ".join(labels) + " ",
                rotation=90,
                fontsize=9,
                color=colour,
                va=va,
                ha="right",
                backgroundcolor=(1, 1, 1, 0.7),
            )
        from matplotlib.patches import Patch

        handles = [Patch(color=PHASE_COLOURS.get(p["name"], "#f5f5f5"), label=p["name"]) for p in report["phases"]]
        top.legend(handles=top.get_legend_handles_labels()[0] + handles, loc="lower right", fontsize=8, ncol=2, framealpha=0.9)
        top.set_xlim(0, duration)
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)
