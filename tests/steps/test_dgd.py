"""Shim patch and exact restore as pure functions over every workload shape."""

import copy
import json

import pytest

from steps.errors import BadInput
from steps.gpu import toggle
from steps.kube import jsonpatch
from steps.workload import shim_patch
from tests.dgd_samples import deployment, dgd_v1alpha1, dgd_v1beta1, no_gpu_workers

CFG = shim_patch.ShimConfig(image="shim:1", xid=79, toggle_dir="/var/lib/faultflow")
SHAPES = [dgd_v1alpha1, dgd_v1beta1, deployment]


def dump(obj):
    return json.dumps(obj, sort_keys=False)


@pytest.mark.parametrize("make", SHAPES)
def test_inject_then_remove_is_byte_identical(make):
    original = make()
    patched, record = shim_patch.apply_shim(original, CFG)
    assert patched != original
    restored = shim_patch.remove_shim(patched, shim_patch.ShimRecord.from_dict(json.loads(json.dumps(record.to_dict()))))
    assert dump(restored) == dump(original)


@pytest.mark.parametrize("make", SHAPES)
def test_inject_twice_adds_nothing(make):
    once, _ = shim_patch.apply_shim(make(), CFG)
    twice, record = shim_patch.apply_shim(once, CFG)
    assert twice == once and record.components == []
    assert shim_patch.patch_ops(once, twice) == []


@pytest.mark.parametrize("make", SHAPES)
def test_remove_twice_is_remove_once(make):
    original = make()
    patched, record = shim_patch.apply_shim(original, CFG)
    once = shim_patch.remove_shim(patched, record)
    assert shim_patch.remove_shim(once, record) == once == original


def test_v1alpha1_workers_found_by_type_never_frontend():
    patched, record = shim_patch.apply_shim(dgd_v1alpha1(), CFG)
    assert sorted(c.name for c in record.components) == ["VllmDecodeWorker", "VllmPrefillWorker"]
    services = patched["spec"]["services"]
    assert services["Frontend"] == dgd_v1alpha1()["spec"]["services"]["Frontend"]
    main = services["VllmDecodeWorker"]["extraPodSpec"]["mainContainer"]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["LD_PRELOAD"] == "/opt/faultflow-shim/libfaultflow_cuda.so:/usr/lib/libjemalloc.so"
    assert env["CUDA_FAULT_INJECTION_ENABLED"] == "0"
    assert env["CUDA_XID_TYPE"] == "79"
    assert env["FAULTFLOW_TOGGLE_FILE"] == "/var/lib/faultflow/toggle"
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["faultflow-toggle"]["readOnly"] is True
    init = services["VllmPrefillWorker"]["extraPodSpec"]["initContainers"][0]
    assert init["name"] == "faultflow-shim-init"
    assert not any(m.get("readOnly") for m in init["volumeMounts"])  # only the init container writes


def test_v1beta1_main_container_by_name_and_list_untouched():
    patched, _ = shim_patch.apply_shim(dgd_v1beta1(), CFG)
    comps = patched["spec"]["components"]
    assert comps[0] == dgd_v1beta1()["spec"]["components"][0]
    sidecar, main = comps[1]["podTemplate"]["spec"]["containers"]
    assert "env" not in sidecar
    assert [e["name"] for e in main["env"]][0] == "B"


def test_patch_ops_never_replace_lists_and_apply_locally():
    original = dgd_v1beta1()
    original["metadata"]["resourceVersion"] = "7"
    patched, _ = shim_patch.apply_shim(original, CFG)
    ops = shim_patch.patch_ops(original, patched)
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert not any(op["op"] == "replace" and op["path"] in ("/spec/components", "/spec") for op in ops)
    assert jsonpatch.apply(original, ops) == patched


def test_concurrent_replica_change_survives_restore():
    original = dgd_v1alpha1()
    patched, record = shim_patch.apply_shim(original, CFG)
    patched["spec"]["services"]["VllmDecodeWorker"]["replicas"] = 5  # the planner scaled meanwhile
    patched["spec"]["services"]["VllmDecodeWorker"]["extraPodSpec"]["mainContainer"]["env"].append({"name": "NEW", "value": "x"})
    restored = shim_patch.remove_shim(patched, record)
    expected = copy.deepcopy(original)
    expected["spec"]["services"]["VllmDecodeWorker"]["replicas"] = 5
    expected["spec"]["services"]["VllmDecodeWorker"]["extraPodSpec"]["mainContainer"]["env"].append({"name": "NEW", "value": "x"})
    assert restored == expected


def test_remove_on_never_patched_object_is_noop():
    _, record = shim_patch.apply_shim(dgd_v1alpha1(), CFG)
    assert shim_patch.remove_shim(dgd_v1alpha1(), record) == dgd_v1alpha1()


@pytest.mark.parametrize("make", [dgd_v1alpha1, dgd_v1beta1])
def test_no_gpu_workers_is_bad_input(make):
    with pytest.raises(BadInput, match="no GPU worker"):
        shim_patch.apply_shim(no_gpu_workers(make()), CFG)


def test_foreign_item_with_our_name_is_bad_input():
    obj = dgd_v1alpha1()
    obj["spec"]["services"]["VllmDecodeWorker"]["extraPodSpec"]["volumes"].append({"name": "faultflow-shim", "emptyDir": {}})
    with pytest.raises(BadInput, match="faultflow did not add"):
        shim_patch.apply_shim(obj, CFG)


def test_deployment_container_choice():
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"].insert(0, {"name": "proxy", "image": "p"})
    patched, _ = shim_patch.apply_shim(obj, shim_patch.ShimConfig(image="s", xid=48, toggle_dir="/t", container="main"))
    proxy, main = patched["spec"]["template"]["spec"]["containers"]
    assert "env" not in proxy and main["env"][2] == {"name": "CUDA_XID_TYPE", "value": "48"}
    with pytest.raises(BadInput):
        shim_patch.apply_shim(obj, shim_patch.ShimConfig(image="s", xid=48, toggle_dir="/t", container="nope"))


def test_init_container_runs_the_shim_images_install_command():
    """The init container calls the shim image's own install.sh (tested in tests/shim/test_image.py),
    which the image's Dockerfile puts at the path this step names."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    container = shim_patch.init_container(CFG)
    assert container["command"] == [
        "/bin/sh",
        shim_patch.INSTALL_SCRIPT,
        shim_patch.LIB_DIR,
        f"{shim_patch.INIT_TOGGLE_MOUNT}/{toggle.FILE_NAME}",
        "10001:10001",  # the toggle's owner: the steps image's user, who switches it off (toggle_pod)
    ]
    assert f"COPY images/shim/install.sh {shim_patch.INSTALL_SCRIPT}" in (repo / "images" / "shim" / "Dockerfile").read_text()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {shim_patch.LIB_DIR, shim_patch.INIT_TOGGLE_MOUNT}
