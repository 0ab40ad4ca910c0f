"""report.json files as `faultflow step report` writes them, from the synthetic run of run_fixtures and
variants of it (slower recovery, no impact, an aborted run): the score and compare tests read these,
never a hand-written report."""

from __future__ import annotations

import json
from pathlib import Path

from steps.events import Event
from tests.cli import faultflow
from tests.steps.run_fixtures import FAIL_FROM, T0, records, run_events

WINDOW = "5"


def write_evidence(
    folder: Path, fail_until: int | None = None, n: int = 60, restored: float = 50.0, extra: list[Event] = (), shift: float = 0.0
) -> Path:
    """The synthetic run with requests FAIL_FROM..fail_until failing (None: none fail), `n` requests, our
    restore at `restored` s, every time moved by `shift` seconds (a run that happened just now)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for r in records(n):
        i = int(r["start"] - T0)
        failed = fail_until is not None and FAIL_FROM <= i <= fail_until
        latency = 0.5 if failed else r["latency"]
        start = r["start"] + shift
        out.append({**r, "outcome": "http_5xx" if failed else "ok", "latency": latency, "start": start, "end": start + latency})
    events = [Event(e.step, e.event, e.fields, e.time + shift) for e in [*run_events(restored), *extra]]
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in out))
    (folder / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in events))
    return folder


def build(evidence: Path, out: Path, *extra: str) -> tuple[int, dict]:
    """Runs the report step; (exit code, report.json)."""
    done = faultflow("step", "report", "--input", str(evidence), "--outputs-dir", str(out), "--window", WINDOW, "--no-plot", *extra)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads((out / "report.json").read_text())
