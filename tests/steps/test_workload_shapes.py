"""Issue 15 item 12: a v1beta1 component without `podTemplate.spec.containers` is refused (exit 2,
nothing changed) instead of patched into a map `{"0": …}` where Kubernetes needs a list."""

from __future__ import annotations

import json

import pytest

from steps.errors import BadInput
from steps.workload import shim_patch as dgd
from tests.dgd_samples import dgd_v1beta1
from tests.steps.conftest import GpuCluster
from tests.steps.test_gpu_cluster import make_world, preflight
from tests.support.cluster_world import install_faultflow


def _without_containers(obj: dict) -> dict:
    """The worker component without a podTemplate (the CRD refuses a podTemplate.spec without containers)."""
    for comp in obj["spec"]["components"]:
        if comp["type"] == "worker":
            del comp["podTemplate"]
    return obj


@pytest.mark.parametrize("template", [{"spec": {}}, {}, None], ids=["no-containers", "no-spec", "no-podTemplate"])
def test_item12_apply_shim_refuses_a_component_without_containers(template):
    obj = dgd_v1beta1()
    worker = next(c for c in obj["spec"]["components"] if c["type"] == "worker")
    if template is None:
        del worker["podTemplate"]
    else:
        worker["podTemplate"] = template
    with pytest.raises(BadInput, match="main container"):
        dgd.apply_shim(obj, dgd.ShimConfig(image="shim:1", xid=79, toggle_dir="/var/lib/faultflow"))


def test_item12_inject_refuses_it_against_the_api_server(cluster, unique, tmp_path):
    """v1beta1 only: v1alpha1 services have no containers list (extraPodSpec.mainContainer is a map)."""
    c = GpuCluster("v1beta1", str(cluster.kubeconfig), cluster)
    install_faultflow(c.kube())
    w = make_world(c, unique, tmp_path)
    live = w.kube.get(w.ref)
    w.kube.json_patch(
        w.ref,
        [
            {
                "op": "replace",
                "path": "/spec/components",
                "value": _without_containers({"spec": {"components": live["spec"]["components"]}})["spec"]["components"],
            }
        ],
    )
    before = w.spec()
    assert preflight(c, w).returncode == 0
    result = c.faultflow(
        "step",
        "inject-cuda-shim",
        "--run-id",
        w.run,
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
        "--xid",
        "79",
        "--toggle-dir",
        str(w.toggle_dir),
        "--no-wait",
    )
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert w.spec() == before and '"0"' not in json.dumps(w.kube.get(w.ref)["spec"])
