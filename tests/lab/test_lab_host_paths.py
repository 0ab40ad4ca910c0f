"""lab.host_paths: a pod's paths mapped onto the simulated node and pod directories (pure functions)."""

from pathlib import Path

from lab.host_paths import PathMap, node_path, translate, volume_map
from steps.gpu.toggle_pod import toggle_off_pod
from steps.workload import shim_patch

NODE = Path("/lab/nodes/gpu-0")
POD = Path("/lab/pods/ns_p")


def test_toggle_off_pod_runs_against_the_nodes_toggle_file():
    pod = toggle_off_pod("run-1", "ns", "gpu-0", "/var/lib/faultflow", "steps:1")
    container = pod["spec"]["containers"][0]
    paths = PathMap.of(volume_map(container, pod["spec"]["volumes"], NODE, POD))
    command = translate(container, paths)
    assert command.argv == ["faultflow", "shim", "off", "--file", "/lab/nodes/gpu-0/var/lib/faultflow/toggle"]


def test_shimmed_worker_env_points_into_the_pod_and_node_directories():
    cfg = shim_patch.ShimConfig(image="shim:1", xid=79, toggle_dir="/var/lib/faultflow")
    container = {
        "name": "main",
        "volumeMounts": shim_patch.worker_mounts(cfg),
        "env": [*shim_patch.worker_env(cfg), {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    command = translate(container, PathMap.of(volume_map(container, shim_patch.volumes(cfg), NODE, POD)))
    assert command.env["LD_PRELOAD"] == "/lab/pods/ns_p/volumes/faultflow-shim/libfaultflow_cuda.so"
    assert command.env["FAULTFLOW_TOGGLE_FILE"] == "/lab/nodes/gpu-0/var/lib/faultflow/toggle"
    assert command.env["CUDA_XID_TYPE"] == "79"  # not a path: unchanged
    assert "SECRET" not in command.env  # references are not resolved here


def test_init_container_maps_image_paths_and_both_volumes():
    cfg = shim_patch.ShimConfig(image="shim:1", xid=79, toggle_dir="/var/lib/faultflow")
    init = shim_patch.init_container(cfg)
    paths = PathMap.of({"/opt/faultflow": "/lab/images/shim", **volume_map(init, shim_patch.volumes(cfg), NODE, POD)})
    assert translate(init, paths).argv == [
        "/bin/sh",
        "/lab/images/shim/install.sh",
        "/lab/pods/ns_p/volumes/faultflow-shim",
        "/lab/nodes/gpu-0/var/lib/faultflow/toggle",
        "10001:10001",  # the toggle's owner (not a path: unchanged)
    ]


def test_prefixes_match_whole_path_components_and_the_longest_wins():
    paths = PathMap.of({"/opt/faultflow": "/img", "/opt/faultflow-shim": "/vol", "/var": "/n/var", "/var/lib/x": "/x"})
    assert paths.path("/opt/faultflow-shim/lib.so") == "/vol/lib.so"
    assert paths.path("/opt/faultflow/install.sh") == "/img/install.sh"
    assert paths.path("/opt/faultflowX") == "/opt/faultflowX"
    assert paths.path("/var/lib/x/toggle") == "/x/toggle"
    assert paths.path("/var") == "/n/var"
    assert paths.env_value("/opt/faultflow-shim/a.so:/usr/lib/b.so") == "/vol/a.so:/usr/lib/b.so"
    assert paths.path("--file=/var/lib/x") == "--file=/var/lib/x"  # only values that start with a path


def test_unsimulated_volumes_stay_unmapped_and_node_paths_are_under_the_node_root():
    container = {"volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "kmsg", "mountPath": "/dev/kmsg"}]}
    volumes = [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "kmsg", "hostPath": {"path": "/dev/kmsg"}}]
    assert volume_map(container, volumes, NODE, POD) == {"/dev/kmsg": NODE / "dev" / "kmsg"}
    assert node_path(NODE, "/proc") == NODE / "proc"
