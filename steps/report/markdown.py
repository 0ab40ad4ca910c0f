"""summary.md: the run in a dozen lines a person reads in the Argo UI or a CI job summary."""

from __future__ import annotations

from steps.event_names import TIMELINE_LABELS
from steps.report.consumers import markdown_lines as consumer_lines
from steps.report.nvsentinel import markdown_line
from steps.report.nvsentinel_mttr import markdown_lines as mttr_lines


def _s(seconds) -> str:
    return "–" if seconds is None else f"{seconds:.1f} s"


def _ms(seconds) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


def _pct(ratio) -> str:
    return "–" if ratio is None else f"{ratio:.1%}"


def score_rows(score: dict | None) -> list[str]:
    if not score:
        return []
    parts = ", ".join(f"{c['name']} {c['points']:.1f}/{c['weight']:g}" for c in score["components"] if c["weight"])
    cap = f"; {score['cap']}" if score.get("cap") else ""
    return [f"| resilience score (0–100) | {score['score']:.1f} ({parts}{cap}) |"]


def render_markdown(report: dict) -> str:
    f = report["figures"]
    icon = {"passed": "PASS", "failed": "FAIL", "skipped": "skip"}
    lines = [
        f"# {report['scenario']}: {report['verdict'].upper()}",
        "",
        f"Run `{report.get('run_id') or '-'}`, {report['duration_s']:.0f} s, {report['inputs']['requests']} requests.",
        "",
        *([f"**aborted: {report['aborted']}**", ""] if report.get("aborted") else []),
        "| figure | value |",
        "|---|---|",
        f"| time to first failure | {_s(f['time_to_first_failure_s'])} |",
        f"| detection (XID seen / node cordoned) | {_s(f['detection_s'])} |",
        f"| time to recovery | {_s(f['time_to_recovery_s'])} |",
        f"| availability during fault | {_pct(f['availability_during_fault'])} ({f['requests_during_fault']} requests) |",
        f"| our cleanup's rollout (disruption) | {_s(f.get('cleanup_disruption_seconds'))} ({f.get('cleanup_failed_requests', 0)} failed) |",
        *score_rows(report.get("resilience_score")),
        "",
        "| phase | requests | success | impact | errors | stalled | p50 | p90 | p99 | first failure | recovery |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report["phases"]:
        lat = p["latency"]
        lines.append(
            f"| {p['name']} | {p['requests']} | {_pct(p['success_rate'])} | {p.get('impact', '–')} | {p.get('errors', 0)} | "
            f"{p.get('stalled', 0)} | {_ms(lat['p50'])} | {_ms(lat['p90'])} | "
            f"{_ms(lat['p99'])} | {_s(p['time_to_first_failure_s'])} | {_s(p['time_to_recovery_s'])} |"
        )
    lines += markdown_line(report.get("nvsentinel"))
    lines += consumer_lines(report.get("consumers") or [])
    lines += mttr_lines(report.get("nvsentinel_mttr"))
    lines += ["", "Checks:", ""]
    for c in report["checks"]:
        reason = f": {c['reason']}" if c.get("reason") and c["status"] != "passed" else ""
        lines.append(f"- {icon[c['status']]} `{c['classname']}.{c['name']}`{reason}")
    marked = [e for e in report["timeline"] if e["event"] in TIMELINE_LABELS]
    if marked:
        lines += ["", "Timeline:", ""]
        lines += [f"- t+{e['t']:.1f} s {e['label']} ({e['step']})" for e in marked]
    return "\n".join(lines) + "\n"
