"""What the report reads: every step's event lines and the load records, from files or directories.

Lines are told apart by shape (an event has `step` and `event`; a record has `outcome`, `start` and
`end`), so a step's captured stdout, its events file and a records file can all be passed as they
are; anything else on a line (log text, a half-written last line) is counted and skipped. A step
writes each event once to stdout and once to its events file (`steps.events`), and both may be read:
the local runner keeps a stage's stdout.log next to its step-events.jsonl, and a user may pass a pod
log with the events file. So identical event lines are kept once; identical files (the same path
given twice, or a directory and a file in it) are read once.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from steps.errors import BadInput, InfrastructureError
from steps.events import Event
from steps.inference.records import is_record
from steps.report.stats import ColumnBuilder, Columns

LINE_FILE_SUFFIXES = (".jsonl", ".ndjson", ".log", ".txt", ".json")


@dataclass
class Inputs:
    events: list[Event]
    columns: Columns
    files: list[str] = field(default_factory=list)
    ignored_lines: int = 0
    duplicate_files: int = 0
    duplicate_events: int = 0


def input_files(paths: list[str]) -> list[Path]:
    """The files behind the given paths (directories are walked); BadInput for a path that is missing."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in LINE_FILE_SUFFIXES))
        else:
            raise BadInput(f"--input {raw} does not exist")
    return found


def read_inputs(files: list[Path]) -> Inputs:
    builder = ColumnBuilder()
    events: list[Event] = []
    seen_files: set[str] = set()
    seen_events: set[str] = set()
    inputs = Inputs(events=events, columns=None)  # type: ignore[arg-type]
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise InfrastructureError(f"cannot read {path}: {error.strerror}") from error
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen_files:
            inputs.duplicate_files += 1
            continue
        seen_files.add(digest)
        inputs.files.append(str(path))
        for line in data.decode("utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line.startswith("{"):
                inputs.ignored_lines += bool(line)
                continue
            try:
                item = json.loads(line)
            except ValueError:
                inputs.ignored_lines += 1
                continue
            if not isinstance(item, dict):
                inputs.ignored_lines += 1
            elif is_record(item):
                if not builder.add(item):
                    inputs.ignored_lines += 1
            elif (
                isinstance(item.get("step"), str)
                and isinstance(item.get("event"), str)
                and isinstance(item.get("time"), (int, float))
                and math.isfinite(item["time"])
            ):
                key = json.dumps(item, sort_keys=True)
                if key in seen_events:
                    inputs.duplicate_events += 1
                    continue
                seen_events.add(key)
                events.append(Event.from_json(line))
            else:
                inputs.ignored_lines += 1
    events.sort(key=lambda e: e.time)
    inputs.columns = builder.build()
    return inputs
