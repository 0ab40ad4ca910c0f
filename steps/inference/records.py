"""One record per inference request, streamed to a JSON-lines file.

A load run lasts as long as the scenario (an hour at 100 req/s is 360k requests), so records are
never kept in memory: the writer buffers a bounded number of lines and flushes them, and readers
iterate the file.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO


class Outcome(str, enum.Enum):
    """How a request ended. Only OK is a success; CANCELLED (stopped mid-flight) is neither."""

    OK = "ok"
    TIMEOUT = "timeout"
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_ERROR = "connection_error"  # DNS, unreachable, reset while connecting
    CONNECTION_DROPPED = "connection_dropped"  # the server closed the connection without a full response
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"
    HTTP_OTHER = "http_other"  # 1xx/3xx or any other non-200 status
    MALFORMED_BODY = "malformed_body"  # 200, but not the OpenAI response shape
    EMPTY_CONTENT = "empty_content"  # 200 and well-formed, but nothing generated
    CANCELLED = "cancelled"


FAILURES = frozenset(o for o in Outcome if o not in (Outcome.OK, Outcome.CANCELLED))
# A request that never answered in time: the worker blocked (hang mode, XIDs 43/109/119 as they often
# look) rather than failed. Every other failure is an error the client was told about.
STALLED_OUTCOMES = frozenset({Outcome.TIMEOUT})
ERROR_OUTCOMES = FAILURES - STALLED_OUTCOMES
# A request that succeeded, but only after this many times the baseline's p99 latency, was blocked too
# (a hang that cleared before the client's timeout, like a process resumed after SIGSTOP).
STALL_FACTOR = 10.0


class Impact(str, enum.Enum):
    """What the fault did to the requests of a phase: nothing, errors, stalls, or both."""

    NONE = "none"
    ERRORS = "errors"
    STALLED = "stalled"
    MIXED = "errors+stalled"

    @classmethod
    def of(cls, errors: int, stalled: int) -> Impact:
        if errors and stalled:
            return cls.MIXED
        return cls.ERRORS if errors else cls.STALLED if stalled else cls.NONE


def stall_bound(baseline_p99: float | None) -> float | None:
    """The latency beyond which a successful request counts as stalled (None: no baseline to compare)."""
    return None if baseline_p99 is None or baseline_p99 <= 0 else STALL_FACTOR * baseline_p99


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request: wall-clock start/end (unix seconds), latency from a monotonic clock."""

    seq: int
    start: float
    end: float
    latency: float
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    phase: str | None = None
    source: str | None = None  # which load process wrote it (records are de-duplicated by source+seq)

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    def to_json(self) -> str:
        record = asdict(self)
        record["outcome"] = self.outcome.value
        record["start"] = round(self.start, 6)
        record["end"] = round(self.end, 6)
        record["latency"] = round(self.latency, 6)
        return json.dumps({k: v for k, v in record.items() if v is not None}, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> RequestRecord:
        return cls(
            seq=int(data["seq"]),
            start=float(data["start"]),
            end=float(data["end"]),
            latency=float(data["latency"]),
            outcome=Outcome(data["outcome"]),
            status=data.get("status"),
            error=data.get("error"),
            phase=data.get("phase"),
            source=data.get("source"),
        )


def is_record(data: dict) -> bool:
    """Record lines and event lines can share a file; records are the ones with an outcome."""
    return "outcome" in data and "start" in data and "end" in data and "event" not in data


class RecordWriter:
    """Appends records to a JSON-lines file.

    Flushes every `flush_every` records or `flush_seconds`, whichever comes first: memory stays bounded
    at high rates, and at low rates a pod killed without notice still leaves all but the last second.
    """

    def __init__(self, path: Path, flush_every: int = 512, flush_seconds: float = 1.0):
        self._path = path
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._buffer: list[str] = []
        self._flush_every = flush_every
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self.written = 0

    def write(self, record: RequestRecord) -> None:
        self._buffer.append(record.to_json())
        if len(self._buffer) >= self._flush_every or time.monotonic() - self._last_flush >= self._flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._file.write("\n".join(self._buffer) + "\n")
            self.written += len(self._buffer)
            self._buffer.clear()
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._file.close()


def read_records(path: Path) -> Iterator[RequestRecord]:
    """Records in a file; other lines (events, a half-written last line of a killed run) are skipped."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and is_record(data):
                try:
                    yield RequestRecord.from_dict(data)
                except (KeyError, TypeError, ValueError):
                    continue
