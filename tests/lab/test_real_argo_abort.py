"""The abort watcher under the real Argo controller (issue 18): a Workflow with a long step, the
`watch-abort` daemon from the real steps image and an exit handler; a node is cordoned, the watcher's
`cordoned>N` condition fires, it stops its own Workflow through the API server as `argo stop` does,
and Argo stops the step, runs the exit handler and ends the Workflow Failed.

Its own lab per Argo line (gpu-0 and cpu-0, Argo installed from its manifests, the product's steps
image built by lab.images.product); `FAULTFLOW_ARGO_LINES` selects lines as for test_real_argo.py.
Needs root and the Debian node packages, like the other real-cluster tests. The watcher runs as the
namespace's default account, given here what deploy/'s `faultflow-abort-watcher` has (get/patch
Workflows in the namespace, list nodes); deploy/'s own RBAC is tested in tests/workflows/test_rbac.py.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import yaml

from lab import tools
from lab.argo import cli as argo_cli
from lab.argo import install
from lab.argo.apply import apply
from lab.images import product
from lab.nodes import cluster as real
from lab.processes import wait_until
from steps.guard.stop import STOP_REASON_ANNOTATION
from steps.kube.client import Ref, connect

NS = "argoabort"
BUSYBOX = "localhost/busybox:1.35"
LINES = tuple(line for line in os.environ.get("FAULTFLOW_ARGO_LINES", ",".join(tools.ARGO_LINES)).split(",") if line)

pytestmark = pytest.mark.timeout(1200)


def _watcher_rbac() -> list[dict]:
    """What deploy/rbac/abort-watcher.yaml grants, bound to the namespace's default account."""
    subject = [{"kind": "ServiceAccount", "name": "default", "namespace": NS}]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "abort-watcher", "namespace": NS},
            "rules": [{"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["get", "patch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "abort-watcher", "namespace": NS},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "abort-watcher"},
            "subjects": subject,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{NS}-abort-watcher"},
            "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{NS}-abort-watcher"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{NS}-abort-watcher"},
            "subjects": subject,
        },
    ]


@pytest.fixture(scope="module", params=LINES)
def lab(request, tmp_path_factory):
    line = request.param
    folder = tmp_path_factory.mktemp(f"argo-abort-{line}")
    cluster = real.RealCluster(
        folder / "lab",
        real.plan_nodes(gpu_nodes=1, cpu_nodes=1),
        extra_images=(*install.images_for(line), product.ensure_steps),
    )
    try:
        cluster.start()
        argo = install.install(cluster, line, workflow_namespaces=(NS,))
        rest = cluster.rest()
        for obj in _watcher_rbac():
            apply(rest, obj)
        yield cluster, argo, folder
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _container(script: str) -> dict:
    return {"image": BUSYBOX, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", script]}


def _workflow(condition: str) -> dict:
    watcher = {
        "image": product.steps_image().ref,
        "imagePullPolicy": "Never",
        "command": ["faultflow", "step", "watch-abort", "--abort-if", condition, "--interval", "0.5"],
        "args": ["--run-id", "{{workflow.name}}", "--workflow-name", "{{workflow.name}}", "--workflow-namespace", "{{workflow.namespace}}"],
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "abort-", "labels": {"app.kubernetes.io/part-of": "faultflow", "faultflow.dev/scenario": "test"}},
        "spec": {
            "entrypoint": "main",
            "onExit": "revert",
            "templates": [
                {
                    "name": "main",
                    "dag": {"tasks": [{"name": "watch-abort", "template": "watch-abort"}, {"name": "hold", "template": "hold"}]},
                },
                {"name": "watch-abort", "daemon": True, "container": watcher},
                {"name": "hold", "container": {**_container(""), "command": ["sleep", "600"]}},
                {"name": "revert", "container": _container("echo reverting after {{workflow.status}}")},
            ],
        },
    }


def _nodes(workflow: dict) -> list[dict]:
    return list(workflow["status"].get("nodes", {}).values())


def _node(workflow: dict, display_name: str, type_: str = "Pod") -> dict | None:
    found = [n for n in _nodes(workflow) if n["displayName"] == display_name and n["type"] == type_]
    return found[0] if found else None


def _summary(workflow: dict) -> str:
    return json.dumps({n["displayName"]: [n["type"], n["phase"], n.get("message", "")] for n in _nodes(workflow)})


def test_a_firing_stop_condition_stops_the_workflow_and_its_exit_handler_runs(lab):
    cluster, argo, folder = lab
    rest = cluster.rest()
    nodes = rest.get("/api/v1/nodes")["items"]
    already = sum(1 for n in nodes if (n.get("spec") or {}).get("unschedulable"))
    condition = f"cordoned>{already} for 1s"
    path = folder / "abort.yaml"
    path.write_text(yaml.safe_dump(_workflow(condition), sort_keys=False))
    name = argo_cli.submit(cluster.kubeconfig, argo.line, NS, path)

    def both_running() -> bool | None:
        current = argo_cli.get(cluster.kubeconfig, argo.line, NS, name)
        watch, hold = _node(current, "watch-abort"), _node(current, "hold")
        return True if watch and hold and watch["phase"] == "Running" and hold["phase"] == "Running" else None

    wait_until(both_running, what=f"{name}: watcher and hold step running", timeout_s=300, interval_s=0.5)
    # The watcher is armed and sees nothing to fire on: the run goes on.
    current = argo_cli.get(cluster.kubeconfig, argo.line, NS, name)
    assert current["status"]["phase"] == "Running", _summary(current)
    target = "gpu-0"
    kube = connect(str(cluster.kubeconfig))
    kube.merge_patch(Ref("v1", "nodes", None, target), {"spec": {"unschedulable": True}})
    cordoned_at = time.monotonic()
    try:
        done = argo_cli.wait(cluster.kubeconfig, argo.line, NS, name)
        ended_at = time.monotonic()
    finally:
        kube.merge_patch(Ref("v1", "nodes", None, target), {"spec": {"unschedulable": False}})
    assert done["status"]["phase"] == "Failed", _summary(done)
    assert done["spec"].get("shutdown") == "Stop"
    assert done["metadata"]["annotations"][STOP_REASON_ANNOTATION] == f"abort-if: {condition}"
    hold = _node(done, "hold")
    assert hold is not None and hold["phase"] in ("Failed", "Error"), _summary(done)
    handler = _node(done, f"{name}.onExit", type_="Pod") or _node(done, "revert")
    assert handler is not None and handler["phase"] == "Succeeded", _summary(done)
    print(f"\nabort_to_workflow_end_s ({argo.line}): {ended_at - cordoned_at:.1f} (cordon → Workflow Failed, exit handler run)")


def test_a_watcher_that_never_fires_lets_the_run_succeed(lab):
    """The other two endings of the daemon: no conditions (it idles) and conditions that never hold; Argo
    ends both with SIGTERM when the DAG is over (exit 0). Neither fails the Workflow. (A watcher that
    exited 0 at once without conditions failed the Workflow under v4.0: Argo marked the daemon Failed.)"""
    cluster, argo, folder = lab
    workflow = _workflow("cordoned>100000")
    templates = workflow["spec"]["templates"]
    templates[0]["dag"]["tasks"].append({"name": "watch-none", "template": "watch-none"})
    idle = json.loads(json.dumps(templates[1]))
    idle["name"] = "watch-none"
    idle["container"]["command"] = ["faultflow", "step", "watch-abort", "--abort-if", ""]
    templates.append(idle)
    templates[2]["container"]["command"] = ["sleep", "5"]  # hold: a short step this time
    path = folder / "no-abort.yaml"
    path.write_text(yaml.safe_dump(workflow, sort_keys=False))
    done = argo_cli.wait(cluster.kubeconfig, argo.line, NS, argo_cli.submit(cluster.kubeconfig, argo.line, NS, path))
    assert done["status"]["phase"] == "Succeeded", _summary(done)
    assert "shutdown" not in done["spec"]
    for daemon in ("watch-abort", "watch-none"):
        node = _node(done, daemon)
        assert node is not None and node["phase"] == "Succeeded", _summary(done)
