"""NVSentinel's Prometheus metrics, as the NVSENTINEL SIMULATOR exports them on `/metrics`.

Names, types, labels and buckets are NVSentinel's own (fault-quarantine/pkg/metrics, node-drainer/
pkg/metrics and platform-connectors' dedup transformer in NVIDIA/NVSentinel; nvsentinel-2026-12.md §3
names them):

* `fault_quarantine_node_quarantine_duration_seconds` — Histogram, no labels, Go's DefBuckets: from the
  health event's generation (the syslog monitor parsing the line) to the quarantine written.
* `node_drainer_pod_eviction_duration_seconds` — Histogram, no labels, ExponentialBuckets(0.1, 2, 23):
  from the node-drainer receiving the event to every pod evicted.
* `nvsentinel_platform_connector_dedup_store_and_analyse_total{check, err_code}` — Counter: a repeat
  downgraded to STORE_AND_ANALYSE (err_code: the event's codes, sorted, comma-joined). Its first release
  had a `node` label too; NVSentinel's current documentation drops it (the deployment platform
  connector dedups for the whole fleet), and so does this simulator.

None of them carries a node label upstream (one fault-quarantine, one node-drainer and one platform
connector serve the fleet), so neither does this one: a reader attributes them to a run by time window.

Each simulator has its own registry (no global state); `serve()` exposes it on 127.0.0.1 and a free
port in the Prometheus text format (prometheus_client's own exposition server).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from lab.processes import free_port

QUARANTINE_DURATION = "fault_quarantine_node_quarantine_duration_seconds"
EVICTION_DURATION = "node_drainer_pod_eviction_duration_seconds"
DEDUP_STORE_AND_ANALYSE = "nvsentinel_platform_connector_dedup_store_and_analyse_total"

GO_DEF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # client_golang's DefBuckets
EVICTION_BUCKETS = tuple(0.1 * 2**i for i in range(23))  # prometheus.ExponentialBuckets(0.1, 2, 23)


@dataclass
class NvsentinelMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.quarantine_duration = Histogram(
            QUARANTINE_DURATION,
            "Time from health event generation to node quarantine completion.",
            buckets=GO_DEF_BUCKETS,
            registry=self.registry,
        )
        self.eviction_duration = Histogram(
            EVICTION_DURATION,
            "Time from event receipt by node-drainer to successful pod eviction completion.",
            buckets=EVICTION_BUCKETS,
            registry=self.registry,
        )
        # prometheus_client appends `_total` to a counter's name itself.
        self.dedup = Counter(
            DEDUP_STORE_AND_ANALYSE.removesuffix("_total"),
            "Total number of duplicate health events marked STORE_AND_ANALYSE by deduplication.",
            ["check", "err_code"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None

    def serve(self) -> str:
        """Start `/metrics` on loopback; returns `host:port` (a scrape target)."""
        port = free_port()
        self._server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
