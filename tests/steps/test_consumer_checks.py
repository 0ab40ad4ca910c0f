"""wait-for-cordon against a real kube-apiserver: only a quarantine made after the fault counts (issue 15
item 13), and the NVML consumers' answers (`--expect-consumer`): allocatable drop, DRA ResourceSlice
taint (resource.k8s.io/v1, device taints GA in 1.37), node condition — each dated, each named."""

from __future__ import annotations

import json
import time

from steps.gpu import nvsentinel as nv
from steps.kube.client import Ref
from tests.steps.test_gpu_cluster import events, make_world
from tests.support.cluster_world import simulate_nvsentinel_quarantine

SLICES = Ref("resource.k8s.io/v1", "resourceslices", None, "")


def stamp(unix_s: float, layout: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return time.strftime(layout, time.gmtime(unix_s))


def quarantine_at(kube, node: str, unix_s: float) -> None:
    """fault-quarantine's markings, dated as FQ dates them (label cordon-timestamp)."""
    simulate_nvsentinel_quarantine(kube, node, 79)
    kube.merge_patch(
        Ref("v1", "nodes", None, node), {"metadata": {"labels": {nv.CORDON_TIMESTAMP_LABEL: stamp(unix_s, "%Y-%m-%dT%H-%M-%SZ")}}}
    )


def wait_for_cordon(c, node: str, fault_ms: int, *extra: str, timeout: str = "3s"):
    return c.faultflow(
        "step", "wait-for-cordon", "--node", node, "--xid", "79", "--timeout", timeout, "--fault-time-ms", str(fault_ms), *extra
    )


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_a_quarantine_from_before_the_fault_is_not_detection(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    fault_ms = int(time.time() * 1000)
    quarantine_at(w.kube, w.node, fault_ms / 1000 - 600)  # an earlier incident nobody released
    old = wait_for_cordon(c, w.node, fault_ms, "--expect", "cordon")
    assert old.returncode == 1, old.stderr
    assert "quarantined before the fault" in old.stderr and "no detection of this fault" in old.stderr
    assert "node_cordoned" not in events(old.stdout) and "xid_detected" not in events(old.stdout)
    # NVSentinel re-quarantines after the fault (uncordon, new event): its new timestamp counts.
    quarantine_at(w.kube, w.node, fault_ms / 1000 + 1)
    new = wait_for_cordon(c, w.node, fault_ms, "--expect", "cordon")
    assert new.returncode == 0, new.stderr
    assert "node_cordoned" in events(new.stdout)


def test_an_undated_quarantine_present_when_the_watch_began_is_not_detection(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)  # no cordon-timestamp label
    done = wait_for_cordon(c, w.node, int(time.time() * 1000), "--expect", "cordon")
    assert done.returncode == 1 and "already marked when the watch began" in done.stderr
    # Without a fault time there is nothing to date against: the marking counts, as before.
    plain = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--expect", "cordon", "--timeout", "3s")
    assert plain.returncode == 0, plain.stderr


def test_an_undated_quarantine_seen_arriving_counts(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    fault_ms = int(time.time() * 1000)
    watcher = c.popen(
        "step",
        "wait-for-cordon",
        "--node",
        w.node,
        "--xid",
        "79",
        "--expect",
        "cordon",
        "--timeout",
        "60s",
        "--fault-time-ms",
        str(fault_ms),
    )
    first = watcher.stdout.readline()  # watch_started: the watch has listed the node unmarked
    assert "watch_started" in first, first
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert "node_cordoned" in out


def set_status(kube, node: str, status: dict) -> None:
    kube.request("PATCH", f"/api/v1/nodes/{node}/status", content_type="application/strategic-merge-patch+json", body={"status": status})


def resource_slice(node: str, taints: list[dict]) -> dict:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-gpu.nvidia.com"},
        "spec": {
            "driver": "gpu.nvidia.com",
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [
                {"name": "gpu-0", "attributes": {"pcieBusID": {"string": "0000:17:00.0"}}, "taints": taints},
                {"name": "gpu-1", "attributes": {"pcieBusID": {"string": "0000:18:00.0"}}},
            ],
        },
    }


def test_the_consumers_answers_are_awaited_dated_and_named(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    fault_ms = int(time.time() * 1000) - 2000
    set_status(
        w.kube,
        w.node,
        {
            "allocatable": {"nvidia.com/gpu": "7"},  # the device plugin's Unhealthy device left allocatable
            "conditions": [
                {
                    "type": "XidCriticalError",
                    "status": "True",
                    "reason": "Xid79",
                    "lastHeartbeatTime": stamp(fault_ms / 1000 + 1),
                    "lastTransitionTime": stamp(fault_ms / 1000 + 1),
                },
                {
                    "type": "OldTrouble",
                    "status": "True",
                    "reason": "Earlier",
                    "lastHeartbeatTime": stamp(fault_ms / 1000 - 600),
                    "lastTransitionTime": stamp(fault_ms / 1000 - 600),
                },
            ],
        },
    )
    created = w.kube.create(
        SLICES,
        resource_slice(
            w.node,
            [
                {"key": "gpu.nvidia.com/gpu-lost", "value": "true", "effect": "NoExecute", "timeAdded": stamp(fault_ms / 1000 - 600)},
                {"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoSchedule"},  # the API server stamps timeAdded
            ],
        ),
    )
    taints = created["spec"]["devices"][0]["taints"]
    assert len(taints) == 2 and taints[1].get("timeAdded"), "device taints are served and dated by this API server"
    try:
        args = (
            "--expect",
            "none",
            "--pci",
            "0000:17:00",
            "--expect-consumer",
            "allocatable",
            "--expect-consumer",
            "dra-taint",
            "--expect-consumer",
            "condition:XidCriticalError",
        )
        done = wait_for_cordon(c, w.node, fault_ms, *args, "--run-id", unique)
        assert done.returncode == 0, done.stderr
        seen = {e["check"]: e for e in lines(done.stdout) if e["event"] == "consumer_detected"}
        assert set(seen) == {"allocatable", "dra-taint", "condition:XidCriticalError"}
        assert seen["allocatable"]["consumer"] == "device plugin" and "7 of 8" in seen["allocatable"]["evidence"]
        assert seen["dra-taint"]["consumer"] == "DRA driver" and "gpu.nvidia.com/xid=79" in seen["dra-taint"]["evidence"]
        assert seen["condition:XidCriticalError"]["latency_ms"] <= 2000  # dated by lastTransitionTime, not by when seen
        passed = {e["check"] for e in lines(done.stdout) if e["event"] == "check_passed"}
        assert {"consumer_allocatable", "consumer_dra_taint", "consumer_condition_xidcriticalerror"} <= passed
        # A condition set before the fault, another GPU's taint: no answer to this fault.
        late = wait_for_cordon(
            c,
            w.node,
            fault_ms,
            "--expect",
            "none",
            "--pci",
            "0000:18:00",
            "--expect-consumer",
            "dra-taint",
            "--expect-consumer",
            "condition:OldTrouble",
            timeout="2s",
        )
        assert late.returncode == 1
        assert "DRA driver (dra-taint)" in late.stderr and "node condition OldTrouble" in late.stderr
        failed = {e["check"] for e in lines(late.stdout) if e["event"] == "check_failed"}
        assert failed == {"consumer_dra_taint", "consumer_condition_oldtrouble"}
    finally:
        w.kube.delete(Ref("resource.k8s.io/v1", "resourceslices", None, created["metadata"]["name"]))


def test_an_allocatable_drop_that_never_comes_fails_and_names_the_ignore_list(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    done = c.faultflow(
        "step",
        "wait-for-cordon",
        "--node",
        w.node,
        "--xid",
        "43",
        "--expect",
        "none",
        "--timeout",
        "2s",
        "--expect-consumer",
        "allocatable",
    )
    assert done.returncode == 1 and "device plugin ignores XID 43" in done.stderr


def test_a_dra_taint_arriving_during_the_window_is_seen(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    created = w.kube.create(SLICES, resource_slice(w.node, []))
    try:
        watcher = c.popen(
            "step",
            "wait-for-cordon",
            "--node",
            w.node,
            "--xid",
            "79",
            "--expect",
            "none",
            "--timeout",
            "8s",
            "--fault-time-ms",
            str(int(time.time() * 1000)),
            "--expect-consumer",
            "dra-taint",
        )
        assert "watch_started" in watcher.stdout.readline()
        current = w.kube.get(Ref("resource.k8s.io/v1", "resourceslices", None, created["metadata"]["name"]))
        current["spec"]["devices"][0]["taints"] = [{"key": "gpu.nvidia.com/gpu-lost", "value": "true", "effect": "NoExecute"}]
        w.kube.replace(Ref("resource.k8s.io/v1", "resourceslices", None, created["metadata"]["name"]), current)
        out, err = watcher.communicate(timeout=60)
        assert watcher.returncode == 0, err
        assert '"consumer_detected"' in out and "gpu.nvidia.com/gpu-lost" in out
    finally:
        w.kube.delete(Ref("resource.k8s.io/v1", "resourceslices", None, created["metadata"]["name"]))


def test_bad_consumer_check_is_bad_input(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    bad = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--expect-consumer", "nvml")
    assert bad.returncode == 2 and "not a consumer check" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    # The workflow parameter's form: one comma-separated string, empty for none.
    listed = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--expect-consumer", "allocatable,condition:")
    assert listed.returncode == 2 and "'condition:' is not a consumer check" in listed.stderr
    empty = c.faultflow(
        "step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--expect", "none", "--timeout", "1s", "--expect-consumer", ""
    )
    assert empty.returncode == 0, empty.stderr
    assert "consumer_detected" not in empty.stdout and "check_failed" not in empty.stdout
