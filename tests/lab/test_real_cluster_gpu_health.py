"""The real lab's GPU device plugin sees an XID through NVML: faultflow's interposer, driven by the
node's toggle, raises the event; the plugin's health check (NVIDIA's rules) marks the GPU Unhealthy;
the node's kubelet takes it out of allocatable `nvidia.com/gpu`; the scheduler keeps a pod that needs
it Pending.

One cluster for the module (gpu-0 with 8 GPUs, cpu-0). Each test targets a GPU by the PCI bus id of
the node's driver tree (the NVML simulator enumerates that tree, so the ids agree) with `faultflow
shim on --file <the node's toggle> --bus <bus>`, and switches the toggle off afterwards. The tests run
in file order and each compares with the allocatable it found: an ignored XID, then one fatal XID on
one GPU, then a lost GPU. Needs root and the real lab's tools, as tests/lab/test_real_cluster.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.nodes import cluster as real
from lab.processes import wait_until
from lab.rest import ApiError, Rest
from tests.cli import faultflow

NODE = "gpu-0"
NS = "gpuhealth"
GPU = "nvidia.com/gpu"
# The kubelet publishes a device's health in the node's status at its next status update (every 10 s).
ALLOCATABLE_TIMEOUT_S = 90
EVENT_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpuhealth") / "lab"
    lab = real.RealCluster(folder, real.plan_nodes(gpu_nodes=1, cpu_nodes=1), coredns=False).start()
    print(f"\nfigures: {real.figures_line(lab.figures)}")
    try:
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def node(cluster):
    """gpu-0, with its toggle switched off again after the test (a fault we injected is reverted)."""
    node = cluster.nodes[NODE]
    yield node
    done = faultflow("shim", "off", "--file", str(node.toggle_file))
    assert done.returncode == 0, done.stderr


def _gpus(node) -> list[tuple[str, str]]:
    """(bus id, UUID) of each GPU in the node's driver tree, in bus-id order."""
    tree = Path(f"/proc/{node.ns.pid}/root/proc/driver/nvidia/gpus")
    out = []
    for folder in sorted(tree.iterdir()):
        fields = dict(line.split(":", 1) for line in (folder / "information").read_text().splitlines() if ":" in line)
        out.append((folder.name, fields["GPU UUID"].strip()))
    return out


def _allocatable(rest: Rest) -> int:
    return int(rest.get(f"/api/v1/nodes/{NODE}")["status"]["allocatable"].get(GPU, "0"))


def _switch_on(node, xid: int, bus: str) -> None:
    done = faultflow("shim", "on", "--file", str(node.toggle_file), "--xid", str(xid), "--bus", bus)
    assert done.returncode == 0, done.stderr


def _plugin_line(node, start: int, needle: str) -> str:
    """The first line of the plugin's log from byte `start` on that contains `needle` (waited for)."""

    def seen():
        text = node.device_plugin.log.read_bytes()[start:].decode(errors="replace")
        return next((line for line in text.splitlines() if needle in line), None)

    return wait_until(seen, what=f"device plugin log line with {needle!r}", timeout_s=EVENT_TIMEOUT_S, process=node.device_plugin)


def _log_size(node) -> int:
    return node.device_plugin.log.stat().st_size


def _allocatable_becomes(rest: Rest, node, want: int) -> int:
    return wait_until(
        lambda: want if _allocatable(rest) == want else None,
        what=f"{NODE} allocatable {GPU} = {want}",
        timeout_s=ALLOCATABLE_TIMEOUT_S,
        process=node.device_plugin,
    )


def test_an_ignored_xid_reaches_the_plugin_and_leaves_allocatable_unchanged(cluster, node):
    rest = cluster.rest()
    before = _allocatable(rest)
    assert before > 0
    bus, uuid = _gpus(node)[0]
    start = _log_size(node)
    _switch_on(node, 43, bus)
    # The plugin processed the event: NVIDIA's ignore list holds 43 (an application error).
    line = _plugin_line(node, start, "xid=43 ")
    assert f"uuid={uuid}" in line and line.endswith("verdict=ignored"), line
    # Nothing was marked Unhealthy by then, and the node still offers every GPU it offered before.
    # (The next test's exact drop by one also proves no health change from this event was pending.)
    assert "Unhealthy" not in node.device_plugin.log.read_bytes()[start:].decode(errors="replace")
    assert _allocatable(rest) == before


def test_a_fatal_xid_on_one_gpu_takes_exactly_that_gpu_out_of_allocatable(cluster, node):
    rest = cluster.rest()
    before = _allocatable(rest)
    bus, uuid = _gpus(node)[1]
    start = _log_size(node)
    _switch_on(node, 48, bus)  # Double Bit ECC: an XidCriticalError the plugin acts on, the device still answers
    _allocatable_becomes(rest, node, before - 1)
    line = _plugin_line(node, start, "xid=48 ")
    assert f"uuid={uuid}" in line and line.endswith("verdict=unhealthy"), line
    assert _plugin_line(node, start, "is Unhealthy") == f"deviceplugin: device {uuid} is Unhealthy"


def test_a_lost_gpu_leaves_allocatable_and_a_pod_needing_every_gpu_stays_pending(cluster, node):
    rest = cluster.rest()
    before = _allocatable(rest)
    capacity = int(rest.get(f"/api/v1/nodes/{NODE}")["status"]["capacity"][GPU])
    bus, _ = _gpus(node)[2]
    start = _log_size(node)
    _switch_on(node, 79, bus)
    # The event names a device that answers GPU_IS_LOST even to its UUID, and so does the next wait:
    # NVIDIA's plugin then cannot tell which GPU it was and marks every GPU Unhealthy.
    line = _plugin_line(node, start, "xid=79 ")
    assert line.endswith("uuid=error-15 verdict=all-unhealthy"), line
    assert _allocatable_becomes(rest, node, 0) < before
    assert int(rest.get(f"/api/v1/nodes/{NODE}")["status"]["capacity"][GPU]) == capacity  # still installed

    # A pod asking for every GPU the node offered before the fault fitted then; now it cannot.
    _namespace(rest)
    rest.post(f"/api/v1/namespaces/{NS}/pods", _gpu_pod("all-gpus", before))
    try:
        pod = wait_until(lambda: _unschedulable(rest, "all-gpus"), what="pod all-gpus Unschedulable", timeout_s=60)
        condition = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
        assert f"Insufficient {GPU}" in condition["message"], condition
        assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    finally:
        rest.delete(f"/api/v1/namespaces/{NS}/pods/all-gpus")


def _gpu_pod(name: str, gpus: int) -> dict:
    container = {
        "name": "main",
        "image": "localhost/busybox:1.35",
        "imagePullPolicy": "Never",
        "command": ["true"],
        "resources": {"limits": {GPU: str(gpus)}},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"nvidia.com/gpu.present": "true"}, "containers": [container]},
    }


def _unschedulable(rest: Rest, name: str) -> dict | None:
    pod = rest.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    scheduled = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] == "PodScheduled"]
    return pod if scheduled and scheduled[0]["status"] == "False" and scheduled[0].get("reason") == "Unschedulable" else None


def _namespace(rest: Rest) -> None:
    try:
        rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    except ApiError as err:
        if err.status != 409:
            raise
    # Pod admission needs the namespace's default ServiceAccount, which kube-controller-manager makes.
    wait_until(lambda: _exists(rest, f"/api/v1/namespaces/{NS}/serviceaccounts/default"), what="default ServiceAccount", timeout_s=60)


def _exists(rest: Rest, path: str) -> bool | None:
    try:
        rest.get(path)
    except ApiError as err:
        if err.status == 404:
            return None
        raise
    return True
