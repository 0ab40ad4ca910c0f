"""NVSentinel's own view of the run, read from Prometheus and set beside ours.

NVSentinel exports (NVIDIA/NVSentinel fault-quarantine/pkg/metrics, node-drainer/pkg/metrics,
platform-connectors' dedup transformer):

* `fault_quarantine_node_quarantine_duration_seconds` — Histogram, no labels: health event generated
  (the syslog monitor parsed the line) → quarantine written. Ours: fault → quarantine seen.
* `node_drainer_pod_eviction_duration_seconds` — Histogram, no labels: event received by the drainer
  → every pod evicted. Ours: quarantine seen → workers gone.
* `nvsentinel_platform_connector_dedup_store_and_analyse_total{check,err_code}` — Counter: a repeat
  inside the dedup window, stored and not acted on (its first release also had a `node` label: series
  with our node or with none are read).

None of them has a node label upstream (one fault-quarantine, one node-drainer and one platform
connector serve the fleet), so a figure is what NVSentinel observed cluster-wide during the run's
window: the increase of `_sum` over the increase of `_count` between the run's start and end (the mean
when several nodes were quarantined meanwhile; `observations` says how many). GPU-fault runs hold a
per-cluster lock, so other faultflow runs do not add to it; real faults elsewhere can. A repeat of our
error code counted while our node was not quarantined is taken as ours: the report says
`deduplicated` then, and that the counter is cluster-wide.

It is evidence, not a check: a Prometheus that does not answer, or lacks NVSentinel's series, leaves
`status: unavailable` and the reason, and the run's verdict is unchanged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from steps.event_names import EventName
from steps.events import Event
from steps.gpu.nvsentinel import XID_CONDITION
from steps.report.prometheus import PrometheusApi, PrometheusError, label_matcher

QUARANTINE = "fault_quarantine_node_quarantine_duration_seconds"
EVICTION = "node_drainer_pod_eviction_duration_seconds"
DEDUP = "nvsentinel_platform_connector_dedup_store_and_analyse_total"
SCRAPE_GRACE_S = 120.0  # how long after the run's last event an observation may still be scraped


@dataclass(frozen=True)
class RunWindow:
    start: float
    end: float
    node: str | None
    error_code: str | None


class Unavailable(Exception):
    pass


def run_window(events: list[Event], origin: float, run_end: float, now: float, error_code: str | None) -> RunWindow:
    node = next((e.fields["node"] for e in events if e.fields.get("node") and e.event in _NODE_EVENTS), None)
    if node is None:
        node = next((e.fields["node"] for e in events if isinstance(e.fields.get("node"), str)), None)
    return RunWindow(origin, max(origin, min(now, run_end + SCRAPE_GRACE_S)), node, error_code)


_NODE_EVENTS = (EventName.FAULT_INJECTED, EventName.XID_DETECTED, EventName.NODE_CORDONED, EventName.PODS_EVICTED)


def _total(api: PrometheusApi, promql: str, at: float) -> float | None:
    samples = api.query(f"sum({promql})", at)
    return samples[0].value if samples else None


def _increase(api: PrometheusApi, series: str, window: RunWindow, *, born_in_window: bool = False) -> float:
    """The counter's increase over the window (0 for a labelled counter first incremented inside it)."""
    end = _total(api, series, window.end)
    if end is None:
        if born_in_window:
            return 0.0
        raise Unavailable(f"no series {series} at {window.end:.0f}")
    start = _total(api, series, window.start)
    if start is None:
        if not born_in_window:
            raise Unavailable(f"no sample of {series} at the run's start (Prometheus began scraping NVSentinel later?)")
        start = 0.0
    seconds = max(1, math.ceil(window.end - window.start))
    resets = _total(api, f"resets({series}[{seconds}s])", window.end)
    if resets:
        raise Unavailable(f"{series} was reset during the run (NVSentinel restarted)")
    return max(0.0, end - start)


def _histogram(api: PrometheusApi, name: str, window: RunWindow) -> tuple[float | None, int]:
    count = _increase(api, f"{name}_count", window)
    total = _increase(api, f"{name}_sum", window)
    n = int(round(count))
    return (total / count if count > 0 else None), n


def _ours(events: list[Event]) -> tuple[float | None, float | None]:
    """Our quarantine latency (fault → quarantine seen) and cordon → workers gone, from wait-for-cordon."""
    seen = next((e for e in events if e.event in (EventName.NODE_CORDONED, EventName.NODE_ANNOTATED)), None)
    evicted = next((e for e in events if e.event == EventName.PODS_EVICTED), None)
    latency = seen.fields.get("latency_ms") if seen is not None else None
    quarantine = latency / 1000 if isinstance(latency, (int, float)) else None
    eviction = None
    if evicted is not None and quarantine is not None and isinstance(evicted.fields.get("after_ms"), (int, float)):
        eviction = max(0.0, evicted.fields["after_ms"] / 1000 - quarantine)
    return quarantine, eviction


def nvsentinel_mttr(api: PrometheusApi, events: list[Event], window: RunWindow) -> dict:
    ours_quarantine, ours_eviction = _ours(events)
    out: dict = {
        "prometheus_url": api.url,
        "node": window.node,
        "error_code": window.error_code,
        "window": {"start": window.start, "end": window.end},
    }
    try:
        q_mean, q_n = _histogram(api, QUARANTINE, window)
        e_mean, e_n = _histogram(api, EVICTION, window)
        labels = {"check": XID_CONDITION, **({"err_code": window.error_code} if window.error_code else {})}
        selector = label_matcher(**labels)
        if window.node:  # the first release's node label: our node's series, or series without one
            selector = selector[:-1] + f',node=~"{_regex_literal(re.escape(window.node))}|"}}'
        dedup = int(round(_increase(api, DEDUP + selector, window, born_in_window=True)))
    except (PrometheusError, Unavailable) as error:
        return {**out, "status": "unavailable", "why": str(error)}
    out.update(
        status="available",
        why=None,
        quarantine={
            "nvsentinel_s": q_mean,
            "observations": q_n,
            "ours_s": ours_quarantine,
            "nvsentinel_is": f"health event generated → quarantine written ({QUARANTINE})",
            "ours_is": "fault injected → quarantine seen (wait-for-cordon)",
        },
        eviction={
            "nvsentinel_s": e_mean,
            "observations": e_n,
            "ours_s": ours_eviction,
            "nvsentinel_is": f"drain received → pods evicted ({EVICTION})",
            "ours_is": "quarantine seen → workers gone from the node (wait-for-cordon)",
        },
        deduplicated=dedup,
        note=(
            None
            if q_n <= 1 and e_n <= 1
            else "NVSentinel's histograms carry no node label: the figures are means over every node it handled in the window"
        ),
    )
    return out


def _regex_literal(pattern: str) -> str:
    return pattern.replace("\\", "\\\\").replace('"', '\\"')


def apply_dedup(summary: dict | None, mttr: dict | None, events: list[Event]) -> dict | None:
    """NVSentinel's own dedup counter settles what a missing quarantine meant: a suppressed repeat
    (NVSentinel worked as configured) — even where faultflow's dedup window did not foresee it. Only
    when our node was not quarantined: the counter is cluster-wide."""
    if not mttr or not mttr.get("deduplicated"):
        return summary
    if any(e.event in (EventName.NODE_CORDONED, EventName.NODE_ANNOTATED) for e in events):
        return summary
    summary = dict(summary or {})
    evidence = (
        f"NVSentinel's platform-connectors stored {mttr['deduplicated']} repeat(s) of ErrorCode "
        f"{mttr.get('error_code') or '(any)'} without acting while node {mttr['node']} was not quarantined "
        f"({DEDUP}, cluster-wide)"
    )
    summary["outcome"] = "deduplicated"
    summary["deduplicated_evidence"] = evidence
    return summary


def markdown_lines(mttr: dict | None) -> list[str]:
    if mttr is None:
        return []
    if mttr.get("status") != "available":
        return ["", f"nvsentinel_mttr: unavailable ({mttr.get('why')})"]

    def figure(part: dict) -> str:
        theirs = "none observed" if part["nvsentinel_s"] is None else f"{part['nvsentinel_s']:.2f} s"
        ours = "–" if part["ours_s"] is None else f"{part['ours_s']:.2f} s"
        return f"NVSentinel {theirs} ({part['nvsentinel_is']}, {part['observations']} in the window) vs ours {ours} ({part['ours_is']})"

    lines = [
        "",
        f"NVSentinel's MTTR (Prometheus {mttr['prometheus_url']}, node {mttr.get('node') or '?'}):",
        "",
        f"- quarantine: {figure(mttr['quarantine'])}",
        f"- eviction: {figure(mttr['eviction'])}",
    ]
    if mttr.get("deduplicated"):
        lines.append(f"- deduplicated: {mttr['deduplicated']} repeat(s) stored without action ({DEDUP})")
    if mttr.get("note"):
        lines.append(f"- {mttr['note']}")
    return lines
