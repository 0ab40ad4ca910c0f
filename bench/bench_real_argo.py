"""Real Argo in the real lab (lab.argo): what Argo adds per stage on real nodes.

Prints `argo_stage_overhead_s` (p95, and the median, over STAGES sequential stages of one workflow, each a
busybox step storing an outputs artifact the way faultflow's stages do: the stage's pod created →
its `main` container started; the pod's init container `argoexec init` and the emissary wrapper are
that overhead), and `argo_workflow_s` (submit → Succeeded, the whole chain). Times are the host's
arrival times of the pods' watch events (the API's own timestamps have whole seconds). The v4.0
line; tools and images already built (`make real-lab-tools`). Needs root and the node packages.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from lab.argo import artifacts, install
from lab.argo import cli as argo_cli
from lab.nodes.cluster import RealCluster, plan_nodes

LINE = "v4.0"
NS = "bench"
STAGES = 10


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def chain() -> dict:
    stage = {
        "name": "stage",
        "inputs": {"parameters": [{"name": "stage"}]},
        "container": {
            "image": "localhost/busybox:1.35",
            "imagePullPolicy": "Never",
            "command": [
                "/bin/sh",
                "-c",
                "mkdir -p /tmp/faultflow/outputs && echo {{inputs.parameters.stage}} > /tmp/faultflow/outputs/stage",
            ],
        },
        "outputs": {
            "artifacts": [
                {
                    "name": "outputs",
                    "path": "/tmp/faultflow/outputs",
                    "archive": {"none": {}},
                    "s3": {"key": "faultflow/{{workflow.namespace}}/{{workflow.uid}}/stage-{{inputs.parameters.stage}}"},
                }
            ]
        },
    }
    steps = [
        [{"name": f"s{n}", "template": "stage", "arguments": {"parameters": [{"name": "stage", "value": str(n)}]}}] for n in range(STAGES)
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "bench-"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "steps": steps}, stage]},
    }


class PodTimes:
    """Watches the namespace's pods; records when each appeared and when its `main` container started."""

    def __init__(self, cluster: RealCluster):
        self.rest = cluster.rest()
        self.created: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.stop = threading.Event()
        version = self.rest.get(f"/api/v1/namespaces/{NS}/pods")["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._watch, args=(version,), daemon=True)
        self.thread.start()

    def _watch(self, version: str) -> None:
        while not self.stop.is_set():
            for event in self.rest.watch(f"/api/v1/namespaces/{NS}/pods", version, timeout_s=5):
                now = time.monotonic()
                pod = event["object"]
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue  # DELETED, or an ERROR carrying a Status
                version = pod["metadata"]["resourceVersion"]
                name = pod["metadata"]["name"]
                self.created.setdefault(name, now)
                for status in pod.get("status", {}).get("containerStatuses", []):
                    state = status.get("state", {})
                    if status["name"] == "main" and ("running" in state or "terminated" in state):
                        self.started.setdefault(name, now)

    def overheads(self) -> list[float]:
        return [self.started[name] - self.created[name] for name in self.started]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="faultflow-bench-argo-") as scratch:
        cluster = RealCluster(Path(scratch) / "lab", plan_nodes(gpu_nodes=1, cpu_nodes=1), extra_images=install.images_for(LINE))
        try:
            cluster.start()
            install.install(cluster, LINE, workflow_namespaces=(NS,))
            artifacts.configure_namespace(cluster.rest(), artifacts.start(cluster), NS)
            times = PodTimes(cluster)
            manifest = Path(scratch) / "chain.yaml"
            manifest.write_text(yaml.safe_dump(chain()))
            submitted = time.monotonic()
            name = argo_cli.submit(cluster.kubeconfig, LINE, NS, manifest)
            done = argo_cli.wait(cluster.kubeconfig, LINE, NS, name)
            total = time.monotonic() - submitted
            times.stop.set()
            if done["status"]["phase"] != "Succeeded":
                print(f"bench_real_argo: workflow {name} ended {done['status']['phase']}", file=sys.stderr)
                return 1
            overheads = times.overheads()
            if len(overheads) != STAGES:
                print(f"bench_real_argo: saw {len(overheads)} of {STAGES} stage pods start", file=sys.stderr)
                return 1
        finally:
            cluster.stop()
    print(f"argo_stage_overhead_s: {p95(overheads):.2f} (p95 of {STAGES} stages; median {statistics.median(overheads):.2f}; Argo {LINE})")
    print(f"argo_workflow_s: {total:.2f} ({STAGES} sequential stages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
