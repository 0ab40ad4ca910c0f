"""GPU-step benchmarks: `cordon_detect_ms` and `step_cold_start_s` as `name: value` lines.

cordon_detect_ms — p95 of the time from a node update (NVSentinel's quarantine marks, written through
the real kube-apiserver) to `wait-for-cordon`'s watch seeing it. Target < 500 ms.
step_cold_start_s — median wall time of a whole `faultflow step inject-xid` run in a fresh interpreter
(toggle on + XID line, against a temp file as kernel log and a fake /proc; a step pod runs one command
and exits). Target < 1.0 s. `step_help_cold_start_s` is the same for a cluster step's `--help`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def _median_run(argv: list[str], runs: int = 7) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from steps.cli import run; run()", *argv], check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_cold_start_s() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        gpu = base / "proc/driver/nvidia/gpus/0000:17:00.0"
        gpu.mkdir(parents=True)
        (gpu / "information").write_text("Device Minor: \t 0\n")
        (base / "kmsg").write_bytes(b"")
        (base / "toggle").mkdir()
        run = _median_run(
            [
                "step",
                "inject-xid",
                "--xid",
                "79",
                "--kmsg-path",
                str(base / "kmsg"),
                "--proc-root",
                str(base / "proc"),
                "--toggle-dir",
                str(base / "toggle"),
            ]
        )
    return run, _median_run(["step", "wait-for-cordon", "--help"])


def cordon_detect_ms(samples: int = 20) -> float:
    from lab.cluster_pool import ControlPlane
    from lab.controlplane import ClusterSpec
    from steps.gpu import nvsentinel
    from steps.gpu.node_watch import watch_node_until
    from steps.kube.client import Ref, connect
    from tests.support.cluster_world import make_gpu_node, simulate_nvsentinel_quarantine

    with ControlPlane.start() as plane:
        cluster = plane.cluster(ClusterSpec())
        kube = connect(str(cluster.kubeconfig))
        latencies = []
        for i in range(samples):
            node = f"bench-{i}"
            make_gpu_node(kube, node)
            connected = threading.Event()
            result = {}

            def watcher(node: str, connected: threading.Event, result: dict) -> None:
                _, seen = watch_node_until(kube, node, nvsentinel.is_quarantined, time.monotonic() + 30, on_connect=connected.set)
                result["seen"] = time.perf_counter() if seen else None

            thread = threading.Thread(target=watcher, args=(node, connected, result))
            thread.start()
            # The watch resumes from the listed resourceVersion, so an update that lands before the
            # request reaches the server is still delivered (and counted, connection time included).
            connected.wait(10)
            written = time.perf_counter()
            simulate_nvsentinel_quarantine(kube, node, 79)
            thread.join(30)
            if result.get("seen") is not None:
                latencies.append((result["seen"] - written) * 1000)
            kube.delete(Ref("v1", "nodes", None, node))
        return p95(latencies) if latencies else float("nan")


def main() -> None:
    run, help_ = step_cold_start_s()
    print(f"step_cold_start_s: {run:.3f}", flush=True)
    print(f"step_help_cold_start_s: {help_:.3f}", flush=True)
    print(f"cordon_detect_ms: {cordon_detect_ms():.1f}", flush=True)


if __name__ == "__main__":
    main()
