"""The real lab (lab.nodes): start-up and pod start-up on real nodes.

Prints `lab_up_s` (hub + control plane + 3 GPU nodes + 1 CPU node Ready + CoreDNS created),
`node_ready_s` (p95 over the nodes: kubelet start → Node Ready) and `pod_start_s` (p95 over PODS bare
busybox pods spread over the nodes: create → Running). Tools and images already built (a first build
is not start-up time). Needs root and the Debian node packages (`make node-packages`).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.nodes.cluster import RealCluster, plan_nodes
from lab.processes import wait_until
from lab.rest import ApiError

PODS = 12


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def pod_starts(cluster: RealCluster) -> list[float]:
    rest = cluster.rest()
    rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
    wait_until(lambda: _exists(rest, "/api/v1/namespaces/bench/serviceaccounts/default"), what="default SA", timeout_s=60)
    names = list(cluster.nodes)
    created = {}
    for i in range(PODS):
        name = f"p{i}"
        rest.post(
            "/api/v1/namespaces/bench/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": names[i % len(names)]},
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {"name": "c", "image": "localhost/busybox:1.35", "imagePullPolicy": "Never", "command": ["sleep", "3600"]}
                    ],
                },
            },
        )
        created[name] = time.monotonic()
    running: dict[str, float] = {}

    def all_running():
        for pod in rest.get("/api/v1/namespaces/bench/pods")["items"]:
            name = pod["metadata"]["name"]
            if name not in running and pod.get("status", {}).get("phase") == "Running":
                running[name] = time.monotonic()
        return True if len(running) == PODS else None

    wait_until(all_running, what="bench pods Running", timeout_s=180, interval_s=0.1)
    return [running[n] - created[n] for n in created]


def _exists(rest, path):
    try:
        return rest.get(path)
    except ApiError:
        return None


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="faultflow-bench-real-") as scratch:
        cluster = RealCluster(Path(scratch) / "lab", plan_nodes(gpu_nodes=3, cpu_nodes=1))
        cluster._prepare()  # builds and installs outside the measured start
        try:
            cluster.start()
            ready = [v for k, v in cluster.figures.items() if k.startswith("node_ready_s.")]
            starts = pod_starts(cluster)
        finally:
            cluster.stop()
    print(f"lab_up_s: {cluster.figures['lab_up_s']:.2f}")
    print(f"node_ready_s: {p95(ready):.2f} (p95 of {len(ready)}; median {statistics.median(ready):.2f})")
    print(f"pod_start_s: {p95(starts):.2f} (p95 of {len(starts)}; median {statistics.median(starts):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
