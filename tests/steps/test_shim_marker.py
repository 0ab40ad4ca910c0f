"""inject-cuda-shim's last check — the shim's start-up marker in every Ready worker's log — through the
real kube-apiserver's pods/log proxy, served by the KUBELET LOG SIMULATOR (lab/kubelet_logs.py).

The worker "containers" are real processes started with the patched component's environment: with the
shim image's library in place of the init container's copy they print the real shim's marker
(shim/control.c); without it (a rollout that did not take the patch) they print nothing of the kind.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from lab.kubelet_logs import KubeletLogSimulator
from lab.native_build import SHIM
from steps.gpu import toggle
from steps.kube.client import Kube, Ref
from steps.workload import dynamo as dgd
from steps.workload import shim_patch
from tests.steps.test_gpu_cluster import _read_until, make_world, preflight
from tests.support.cluster_world import simulate_dgd_operator_rollout


def start_workers(kube: Kube, kubelet: KubeletLogSimulator, ns: str, node: str, obj: dict, with_shim: bool) -> list[str]:
    """What the operator and the kubelet would do after the patch: one Ready pod per GPU worker on the
    node, its main container's process run here with the component's env, its stderr the pod log."""
    names = []
    for comp in dgd.gpu_workers(obj):
        main = dgd.value_at(dgd.value_at(obj, comp.base), comp.main) or {}
        env = {e["name"]: e.get("value", "") for e in main.get("env") or []}
        pod = f"{obj['metadata']['name']}-{comp.name.lower()}-0"
        labels = {"nvidia.com/dynamo-graph-deployment-name": obj["metadata"]["name"], "nvidia.com/dynamo-component-type": comp.type}
        kube.create(
            Ref("v1", "pods", ns, ""),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "labels": labels},
                "spec": {"nodeName": node, "containers": [{"name": "main", "image": "worker:1"}]},
            },
        )
        kube.request(
            "PATCH",
            f"/api/v1/namespaces/{ns}/pods/{pod}/status",
            content_type="application/merge-patch+json",
            body={"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
        )
        run_env = {"PATH": "/usr/bin:/bin", "FAULTFLOW_TOGGLE_FILE": env.get("FAULTFLOW_TOGGLE_FILE", "")}
        if with_shim:
            assert env["LD_PRELOAD"].startswith(f"{shim_patch.LIB_DIR}/"), env["LD_PRELOAD"]
            run_env["LD_PRELOAD"] = str(SHIM)  # the init container's copy of the shim image's library
        worker = subprocess.run(["/bin/sh", "-c", "echo worker starting; echo ready >&2"], env=run_env, capture_output=True)
        kubelet.register(ns, pod, "main").write_bytes(worker.stdout + worker.stderr)
        names.append(pod)
    return names


@pytest.mark.parametrize("with_shim", [True, False], ids=["marker-present", "marker-absent"])
def test_inject_verifies_the_shim_marker_in_worker_logs(gpu_cluster, unique, tmp_path, with_shim):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    toggle.write(w.toggle_dir / "toggle", toggle.Toggle(on=False))  # the shim image's install.sh creates it
    with KubeletLogSimulator(tmp_path / "logs", c.lab.pki) as kubelet:
        w.kube.request(
            "PATCH", f"/api/v1/nodes/{w.node}/status", content_type="application/merge-patch+json", body={"status": kubelet.node_status()}
        )
        assert preflight(c, w).returncode == 0
        proc = c.popen(
            "step",
            "inject-cuda-shim",
            "--run-id",
            w.run,
            "--namespace",
            w.ns,
            "--target",
            "dgd/llm",
            "--shim-image",
            "shim:1",
            "--xid",
            "79",
            "--toggle-dir",
            str(w.toggle_dir),
            "--timeout",
            "60s",
        )
        _read_until(proc, "shim_patched")
        pods = start_workers(w.kube, kubelet, w.ns, w.node, w.kube.get(w.ref), with_shim)
        simulate_dgd_operator_rollout(w.kube, w.ref)
        out, err = proc.communicate(timeout=90)
    if with_shim:
        assert proc.returncode == 0, err
        last = json.loads(out.splitlines()[-1])
        assert last["event"] == "shim_verified" and last["pods"] == len(pods)
    else:
        assert proc.returncode == 1, err
        line = err.strip()
        assert len(line.splitlines()) == 1 and "the shim did not load" in line
        assert f"{len(pods)} of {len(pods)}" in line and all(p in line for p in pods)
