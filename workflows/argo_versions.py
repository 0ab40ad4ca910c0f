"""Which Argo release each feature the rendered YAML uses needs (the README's version matrix comes
from this table, and `faultflow render --argo V` refuses output that needs a newer Argo than V)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SUPPORTED = ("3.6", "3.7", "4.0")

# key in the rendered objects → (first Argo release with it, what it is for)
FEATURES: dict[str, tuple[str, str]] = {
    "mutexes": ("3.6", "synchronization: one run per target (the plural list; singular `mutex` is gone in 4.0)"),
    "schedules": ("3.6", "CronWorkflow schedules (the plural list; singular `schedule` is gone in 4.0)"),
    "expression": ("3.3", "retryStrategy.expression: retry only infrastructure errors (exit 3)"),
    "depends": ("2.9", "DAG dependencies with result conditions (exit handler order)"),
    "timezone": ("2.12", "CronWorkflow time zone"),
    "executor": ("2.8", "a separate account for Argo's executor"),
    "metrics": ("2.7", "Prometheus metrics from the report's figures"),
    "daemon": ("2.0", "the background load task"),
    "optional": ("2.3", "stage outputs that may be missing"),
    "podGC": ("2.4", "finished runs' pods deleted (failed runs keep theirs)"),
    "ttlStrategy": ("2.5", "finished Workflows deleted after a week (the janitor's after an hour)"),
}


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _keys(obj: Any) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from _keys(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _keys(item)


def too_new(documents: list[dict], version: str) -> list[str]:
    """Features used in `documents` that Argo `version` does not have."""
    used = {k for doc in documents for k in _keys(doc.get("spec", {}))}
    return sorted(f"{k} (needs Argo {FEATURES[k][0]})" for k in used & FEATURES.keys() if _key(FEATURES[k][0]) > _key(version))


def minimum(documents: list[dict]) -> str:
    used = {k for doc in documents for k in _keys(doc.get("spec", {}))} & FEATURES.keys()
    return max((FEATURES[k][0] for k in used), key=_key, default=SUPPORTED[0])
