"""`--target deployment/NAME` and `statefulset/NAME` (GPU workloads outside Dynamo's operator) through
the whole inject → cleanup sequence against the real kube-apiserver: the stored spec (with the API
server's defaults) comes back byte-identical, and every step twice is the step once."""

from __future__ import annotations

import json
import threading

import pytest

from steps.kube.client import Kube, Ref
from tests.dgd_samples import deployment
from tests.steps.conftest import GpuCluster
from tests.support.cluster_world import install_faultflow, make_gpu_node, make_namespace


def statefulset(name: str, namespace: str) -> dict:
    obj = deployment(name=name, namespace=namespace)
    obj["kind"] = "StatefulSet"
    obj["spec"]["serviceName"] = name
    return obj


def simulate_workload_controller_rollout(kube: Kube, ref: Ref) -> None:
    """The Deployment / StatefulSet controller's status after the new template rolled out everywhere."""
    obj = kube.get(ref)
    want = obj["spec"].get("replicas", 1)
    status = {
        "observedGeneration": obj["metadata"]["generation"],
        "replicas": want,
        "updatedReplicas": want,
        "readyReplicas": want,
        "availableReplicas": want,
    }
    if obj["kind"] == "StatefulSet":
        status |= {"currentRevision": "r2", "updateRevision": "r2"}
    kube.request("PATCH", ref.path() + "/status", body={"status": status}, content_type="application/merge-patch+json")


@pytest.mark.parametrize("kind", ["deployment", "statefulset"])
def test_plain_workload_inject_cleanup_is_byte_identical(cluster, unique, tmp_path, kind):
    c = GpuCluster("v1beta1", str(cluster.kubeconfig), cluster)
    kube = c.kube()
    install_faultflow(kube)
    ns, node, run = f"wl-{unique}", f"gpu-{unique}", f"run-{unique}"
    make_namespace(kube, ns)
    make_gpu_node(kube, node)
    obj = (deployment if kind == "deployment" else statefulset)(name="worker", namespace=ns)
    ref = Ref("apps/v1", f"{kind}s", ns, "worker")
    kube.create(ref, obj)
    spec = lambda: json.dumps(kube.get(ref)["spec"], sort_keys=True)  # noqa: E731
    before = spec()
    tdir = tmp_path / "toggle"
    tdir.mkdir()
    target = f"{kind}/worker"
    c.faultflow(
        "step",
        "preflight",
        "--run-id",
        run,
        "--namespace",
        ns,
        "--target",
        target,
        "--node",
        node,
        "--xid",
        "48",
        "--expect-remediation=false",
        "--toggle-dir",
        str(tdir),
        check=True,
    )
    inject = (
        "step",
        "inject-cuda-shim",
        "--run-id",
        run,
        "--namespace",
        ns,
        "--target",
        target,
        "--shim-image",
        "shim:1",
        "--xid",
        "48",
        "--toggle-dir",
        str(tdir),
    )
    c.faultflow(*inject, "--no-wait", check=True)
    once = spec()
    assert once != before and "faultflow-shim-init" in once and "LD_PRELOAD" in once
    c.faultflow(*inject, "--no-wait", check=True)
    assert spec() == once  # inject twice = once
    # The rolled-out pod, Ready on the target node (inject-cuda-shim refuses a node without one).
    kube.create(
        Ref("v1", "pods", ns, ""),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "worker-0", "labels": {"app": "worker"}},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "runtime:1"}]},
        },
    )
    kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/worker-0/status",
        content_type="application/merge-patch+json",
        body={"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    # The rollout wait watches the object until the controller reports the new template everywhere.
    threading.Timer(0.5, simulate_workload_controller_rollout, (kube, ref)).start()
    waited = c.faultflow(*inject, "--timeout", "30s", "--no-verify-marker")
    assert waited.returncode == 0, waited.stderr
    assert "rollout_done" in waited.stdout
    cleanup = ("step", "cleanup-dgd", "--run-id", run, "--namespace", ns, "--no-toggle-off")
    first = c.faultflow(*cleanup, check=True)
    assert '"dgd_restored"' in first.stdout
    assert spec() == before  # byte-identical, defaults included
    again = c.faultflow(*cleanup, check=True)
    assert '"already_clean"' in again.stdout and spec() == before  # cleanup twice = once
