"""A step's events: one JSON line on stdout (Argo's log) and the same line appended to a file under
the outputs directory, so the report can read them as an artifact without scraping pod logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steps.events import Event, emit

EVENTS_FILE = "events.jsonl"


class EventLog:
    def __init__(self, step: str, path: Path | None):
        self._step = step
        self._path = path

    def emit(self, event: str, **fields: Any) -> Event:
        record = emit(self._step, event, **fields)
        if self._path is not None:
            with self._path.open("a", encoding="utf-8") as out:
                out.write(record.to_json() + "\n")
        return record
