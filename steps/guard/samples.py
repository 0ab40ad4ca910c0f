"""What the watcher measures once per interval, one source each: its own probes of the frontend,
the cluster's nodes, and Prometheus. Each turns into one number per condition (None: no data)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from steps.inference.records import Outcome, RequestRecord
from steps.kube import objects as o

# NVSentinel's fault-quarantine counts the nodes of its `--gpu-node-label` (the chart's default).
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")


@dataclass
class ProbeTally:
    """The probe requests completed since the last `take` (cancelled ones, at shutdown, are no evidence)."""

    pending: list[RequestRecord] = field(default_factory=list)

    def add(self, record: RequestRecord) -> None:
        if record.outcome is not Outcome.CANCELLED:
            self.pending.append(record)

    def take(self) -> list[RequestRecord]:
        taken, self.pending = self.pending, []
        return taken


def availability(records: list[RequestRecord]) -> float | None:
    return sum(r.ok for r in records) / len(records) if records else None


def p99_seconds(records: list[RequestRecord]) -> float | None:
    """Every probe's latency counts, a failed one too: a hang is the worst latency there is (it ends at
    the probe's timeout), and leaving it out would make a hanging frontend look fast."""
    if not records:
        return None
    latencies = sorted(r.latency for r in records)
    # numpy's "linear" percentile (the report's method), without numpy for a handful of numbers.
    rank = 0.99 * (len(latencies) - 1)
    low = int(rank)
    high = min(low + 1, len(latencies) - 1)
    return latencies[low] + (latencies[high] - latencies[low]) * (rank - low)


def cordoned(nodes: Iterable[Mapping[str, Any]]) -> int:
    return sum(1 for n in nodes if o.unschedulable(dict(n)))


def breaker_utilization(nodes: Iterable[Mapping[str, Any]]) -> float | None:
    """NVSentinel's `fault_quarantine_breaker_utilization`: the share of its GPU nodes that are cordoned
    (None without GPU nodes: nothing for the breaker to count)."""
    key, value = GPU_NODE_LABEL
    gpu = [n for n in nodes if ((n.get("metadata") or {}).get("labels") or {}).get(key) == value]
    return cordoned(gpu) / len(gpu) if gpu else None
