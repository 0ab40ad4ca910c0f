"""Issue 15 item 2: images are installation configuration (ConfigMap faultflow-config in faultflow's
namespace, written by deploy/), not run parameters. Against the real kube-apiserver: preflight and
inject-cuda-shim refuse any other image (one line, exit 2, nothing changed), and without one take the
installed image; a namespace where faultflow is not installed is refused."""

from __future__ import annotations

import json

from steps.kube.client import Ref
from steps.run import install
from steps.run import ledger as L
from tests.steps.test_gpu_cluster import make_world
from tests.support.cluster_world import HOME, SHIM_IMAGE, STEPS_IMAGE

FORGED_IMAGES = ("attacker.example/evil:1", "faultflow-steps:0.1.1", f"{STEPS_IMAGE}@sha256:{'0' * 64}", " ")


def _preflight(c, w, *extra: str):
    return c.faultflow(
        "step",
        "preflight",
        "--run-id",
        w.run,
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
        "--node",
        w.node,
        "--xid",
        "79",
        "--expect-remediation=false",
        "--toggle-dir",
        str(w.toggle_dir),
        *extra,
    )


def _inject(c, w, *extra: str):
    return c.faultflow(
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
        *extra,
    )


def _one_line_bad_input(result) -> bool:
    return result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_item2_preflight_and_inject_refuse_images_other_than_the_installed_ones(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    spec0 = w.spec()
    refused = total = 0
    for image in FORGED_IMAGES:
        for option in ("--steps-image", "--shim-image"):
            total += 1
            result = _preflight(c, w, option, image)
            refused += _one_line_bad_input(result) and L.LedgerStore(w.kube, HOME).load(w.ns, w.run) is None
    assert refused == total, "preflight let a forged image through"
    ok = _preflight(c, w, "--steps-image", STEPS_IMAGE, "--shim-image", SHIM_IMAGE)
    assert ok.returncode == 0, ok.stderr
    for image in FORGED_IMAGES:
        total += 1
        result = _inject(c, w, "--shim-image", image)
        refused += _one_line_bad_input(result) and w.spec() == spec0
    assert refused == total, "inject-cuda-shim let a forged image through"
    print(f"forged inputs refused: {refused} of {total} (item 2, images)")
    # Without --shim-image the installed image is the one that goes into the workers.
    injected = _inject(c, w)
    assert injected.returncode == 0, injected.stderr
    assert f'"image": "{SHIM_IMAGE}"' in json.dumps(w.kube.get(w.ref)["spec"]).replace('":"', '": "')


def test_item2_a_namespace_without_faultflow_installed_is_refused(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    bare = f"bare-{unique}"
    w.kube.create(Ref("v1", "namespaces", None, ""), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": bare}})
    result = c.faultflow(
        "step",
        "preflight",
        "--run-id",
        w.run,
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
        "--node",
        w.node,
        "--xid",
        "79",
        "--expect-remediation=false",
        env={install.NAMESPACE_ENV: bare},
    )
    assert _one_line_bad_input(result) and f"not installed in namespace {bare}" in result.stderr
    assert w.kube.list(Ref("v1", "configmaps", bare, ""))["items"] == [] or all(
        cm["metadata"]["name"] == "kube-root-ca.crt" for cm in w.kube.list(Ref("v1", "configmaps", bare, ""))["items"]
    )


def test_home_namespace_order(tmp_path):
    """FAULTFLOW_NAMESPACE, then the pod's own namespace in a pod, then `faultflow`."""
    pod_file = tmp_path / "namespace"
    pod_file.write_text("faultflow-prod\n")
    in_pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert install.home_namespace({install.NAMESPACE_ENV: "ops", **in_pod}, pod_file) == "ops"
    assert install.home_namespace(in_pod, pod_file) == "faultflow-prod"
    assert install.home_namespace({}, pod_file) == install.DEFAULT_NAMESPACE
    assert install.home_namespace(in_pod, tmp_path / "absent") == install.DEFAULT_NAMESPACE
