"""The whole GPU fault flow by hand in the lab: the real step commands against `faultflow lab up`.

preflight → gate → inject-cuda-shim → inject-xid → wait-for-cordon → cleanup-dgd → verify-inference,
with `load` running throughout and `report` at the end, for XID 79 and 48 (fatal in NVSentinel's
catalogue: cordon, drain, workers back on another node) and 94 (non-fatal: no cordon, the workers on the
node crash-loop until the toggle is off). The node's host paths are the lab's node directory, as the
kubelet simulator maps them for a pod (`lab.host_paths`).
"""

from __future__ import annotations

import json

import pytest

from lab.processes import wait_until
from steps import nvsentinel, toggle
from steps.kube import Ref, connect
from steps.xids import lookup
from tests.lab.lab_runner import LabRun, events, run_cli


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab_dir = tmp_path_factory.mktemp("lab") / ".lab"
    up = run_cli("lab", "up", "--dir", str(lab_dir))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield lab_dir, json.loads((lab_dir / "state.json").read_text())
    finally:
        down = run_cli("lab", "down", "--dir", str(lab_dir))
        assert down.returncode == 0, down.stderr


def names(result) -> list[str]:
    return [e["event"] for e in events(result.stdout)]


def worker_pods(kube, state) -> list[dict]:
    pods = kube.list(Ref("v1", "pods", state["namespace"], ""),
                     label_selector=f"nvidia.com/dynamo-graph-deployment-name={state['dgd']},nvidia.com/dynamo-component-type=worker")
    return [p for p in pods.get("items") or [] if not p["metadata"].get("deletionTimestamp")]


def restarts(pod: dict) -> int:
    return sum(c.get("restartCount", 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


@pytest.mark.parametrize("xid", [94, 48, 79])
def test_gpu_fault_flow(lab, tmp_path, xid):
    lab_dir, state = lab
    fatal = lookup(xid).fatal
    run = LabRun(lab_dir, state, tmp_path / "run")
    kube = connect(state["kubeconfig"])
    ns, url, run_id = state["namespace"], state["frontend_url"], f"lab-{xid}"
    dgd = Ref(f"nvidia.com/{state['dgd_version']}", "dynamographdeployments", ns, state["dgd"])
    spec_before = json.dumps(kube.get(dgd)["spec"], sort_keys=True)
    stop_file = tmp_path / "stop-load"
    load = run.popen("step", "load", "--url", url, "--rate", "5", "--concurrency", "4", "--timeout", "5",
                     "--stop-file", str(stop_file), "--outputs", str(run.folder / "load"))
    try:
        pre = run.step("preflight", "--run-id", run_id, "--namespace", ns, "--target", f"dgd/{state['dgd']}", "--xid", str(xid),
                       "--toggle-dir", "/var/lib/faultflow", "--steps-image", "steps:1", "--outputs-dir", str(tmp_path / "pre"))
        assert pre.returncode == 0, pre.stderr
        node = (tmp_path / "pre" / "node").read_text()  # preflight picked the node of a Ready GPU worker
        gate = run.step("verify-inference", "--mode", "gate", "--url", url, "--requests", "5", "--outputs", str(run.folder / "gate"))
        assert gate.returncode == 0, gate.stderr

        shim = run.step("inject-cuda-shim", "--run-id", run_id, "--namespace", ns, "--target", f"dgd/{state['dgd']}",
                        "--shim-image", "shim:1", "--xid", str(xid), "--toggle-dir", "/var/lib/faultflow",
                        "--no-verify-marker", "--timeout", "90s")
        assert shim.returncode == 0, shim.stderr
        assert names(shim) == ["shim_patched", "rollout_done"]
        victims = [p["metadata"]["name"] for p in worker_pods(kube, state) if p["spec"].get("nodeName") == node]
        assert victims, "no shimmed worker on the target node"
        # Each shimmed worker mapped its node's toggle through the real shim (its start-up marker).
        node_toggle = run.node_path(node, "/var/lib/faultflow/toggle")
        for pod in victims:
            log = (lab_dir / "pod-logs" / f"{ns}_{pod}.log").read_text()
            assert "faultflow-shim: loaded" in log and f"toggle={node_toggle} (mapped)" in log

        xid_out = tmp_path / "xid"
        inject = run.step("inject-xid", "--xid", str(xid), "--run-id", run_id, "--outputs-dir", str(xid_out),
                          "--kmsg-path", str(run.node_path(node, "/dev/kmsg")), "--proc-root", str(run.node_path(node, "/proc")),
                          "--toggle-dir", str(run.node_path(node, "/var/lib/faultflow")), "--expires-in", "10m")
        assert inject.returncode == 0, inject.stderr
        assert names(inject) == ["fault_injected", "xid_written"]

        # The workers on the node now fail their CUDA calls and die; the kubelet simulator restarts them.
        effect = lookup(xid).effect
        log = lab_dir / "pod-logs" / f"{ns}_{victims[0]}.log"
        wait_until(lambda: True if f"CUDA error {effect.call_error}" in log.read_text() else None,
                   what="the shimmed worker failing", timeout_s=30)

        cordon = run.step("wait-for-cordon", "--node", node, "--xid", str(xid), "--run-id", run_id,
                          "--fault-time-ms", (xid_out / "fault-time-ms").read_text(),
                          "--timeout", "60s" if fatal else "3s", "--namespace", ns, "--target", f"dgd/{state['dgd']}",
                          *(["--wait-evicted", "--eviction-timeout", "60s"] if fatal else []),
                          "--outputs-dir", str(tmp_path / "cordon"))
        assert cordon.returncode == 0, cordon.stderr
        node_obj = kube.get(Ref("v1", "nodes", None, node))
        if fatal:
            assert names(cordon) == ["node_cordoned", "pods_evicted"]
            assert nvsentinel.is_quarantined(node_obj)
            condition = next(c for c in node_obj["status"]["conditions"] if c["type"] == nvsentinel.XID_CONDITION)
            assert condition["status"] == "True" and f"ErrorCode:{xid} " in condition["message"]
            # The operator simulator put the workers back on healthy nodes.
            wait_until(lambda: True if len([p for p in worker_pods(kube, state) if p["spec"].get("nodeName")
                                            and p["spec"]["nodeName"] != node]) >= 2 else None,
                       what="workers rescheduled off the cordoned node", timeout_s=60)
        else:
            assert names(cordon) == ["node_not_cordoned"] and not nvsentinel.is_quarantined(node_obj)
            wait_until(lambda: True if any(restarts(p) > 0 for p in worker_pods(kube, state)
                                           if p["spec"].get("nodeName") == node) else None,
                       what="the worker crash-looping on the node", timeout_s=30)

        cleanup = run.step("cleanup-dgd", "--run-id", run_id, "--namespace", ns, "--timeout", "60s")
        assert cleanup.returncode == 0, cleanup.stderr
        assert sorted(names(cleanup)) == ["dgd_restored", "toggle_off"]
        assert json.dumps(kube.get(dgd)["spec"], sort_keys=True) == spec_before
        assert not toggle.read(node_toggle).on  # switched off by the toggle-off pod the kubelet simulator ran

        recover = run.step("verify-inference", "--mode", "recover", "--url", url, "--window", "5", "--deadline", "90",
                           "--outputs", str(run.folder / "recover"))
        assert recover.returncode == 0, recover.stderr
    finally:
        stop_file.touch()
        load.communicate(timeout=60)
        if fatal:  # the GPU reset NVSentinel waits for: un-quarantines the node for the next scenario
            reset_gpu(run, kube, locals().get("node"))
    assert load.returncode == 0

    report = run.step("report", "--input", str(run.folder), "--outputs", str(tmp_path / "report"), "--scenario", "lab",
                      "--run-id", run_id, "--no-plot")
    timeline = {e["event"] for e in json.loads((tmp_path / "report" / "report.json").read_text())["timeline"]}
    expected = {"fault_injected", "dgd_restored"} | ({"node_cordoned", "pods_evicted"} if fatal else set())
    assert expected <= timeline, (timeline, report.stderr)


def reset_gpu(run: LabRun, kube, node: str | None) -> None:
    """`GPU reset executed: <uuid>, success: true` on the node's kernel log, as NVSentinel's GPU reset ends."""
    if node is None:
        return
    from steps.gpus import list_gpus
    from steps.kmsg import write_record

    uuid = list_gpus(str(run.node_path(node, "/proc")))[0].uuid
    write_record(str(run.node_path(node, "/dev/kmsg")), f"<6>kernel: GPU reset executed: {uuid}, success: true\n".encode())
    ref = Ref("v1", "nodes", None, node)
    wait_until(lambda: True if not (kube.get(ref).get("spec") or {}).get("unschedulable") else None,
               what=f"{node} un-quarantined after the GPU reset", timeout_s=30)
    assert not nvsentinel.is_quarantined(kube.get(ref))
