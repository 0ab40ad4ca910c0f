"""The one sink of a step's events: one JSON line on stdout (the pod's log) and the same line appended
to one events file, which the report reads as an artifact without scraping logs. The report builds
the run's timeline from these."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from steps.event_names import EVENTS_FILE_ENV


@dataclass(frozen=True)
class Event:
    step: str
    event: str
    fields: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(
            {"time": round(self.time, 6), "step": self.step, "event": self.event, **self.fields},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> Event:
        record = json.loads(line)
        return cls(
            step=record.pop("step"),
            event=record.pop("event"),
            time=record.pop("time"),
            fields=record,
        )


# The events file a step with an outputs directory (verify-inference, load) keeps there when the
# environment names none, so a step run by hand leaves its events next to its records.
EVENTS_FILE = "events.jsonl"


def emit(step: str, event: str, stream: IO[str] | None = None, *, events_file: str | os.PathLike | None = None, **fields: Any) -> Event:
    """Write one event line and flush it, so a killed step still leaves what it reported, and append it
    to one file: $FAULTFLOW_EVENTS_FILE when that is set, else `events_file` when given (never both, so
    no line is written twice). With `stream`, the line goes there only."""
    record = Event(step=step, event=event, fields=fields)
    out = stream if stream is not None else sys.stdout
    out.write(record.to_json() + "\n")
    out.flush()
    copy = (os.environ.get(EVENTS_FILE_ENV) or events_file) if stream is None else None
    if copy:
        try:
            os.makedirs(os.path.dirname(copy) or ".", exist_ok=True)
            with open(copy, "a", encoding="utf-8") as file:
                file.write(record.to_json() + "\n")
        except OSError as error:
            print(f"faultflow: warning: cannot append event to {copy}: {error.strerror}", file=sys.stderr)
    return record
