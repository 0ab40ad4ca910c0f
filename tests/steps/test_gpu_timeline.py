"""The GPU steps speak the report's language: their event lines, captured from a whole GPU sequence
against the real kube-apiserver, go through the report code (steps/report_inputs.py, run_report.py)
and come out as a timeline with fault → detection → cordon → eviction → cleanup, in that order, and
the phases baseline → fault → remediation → recovery."""

from __future__ import annotations

import json

from steps.event_names import TIMELINE_LABELS, EventName
from steps.gpu import nvsentinel, toggle
from steps.kube.client import Kube, Ref
from steps.report.inputs import input_files, read_inputs
from steps.report.journal import Criteria, build_report
from steps.report.phases import boundaries
from tests.steps.test_gpu_cluster import _read_until, inject, make_world, preflight
from tests.steps.test_gpus import make_proc
from tests.support.cluster_world import KubeletSimulator, simulate_nvsentinel_quarantine


def simulate_nvsentinel_xid_condition(kube: Kube, node: str, xid: int) -> None:
    """NVSentinel's platform connector: the syslog monitor's XID finding as the node condition (§3.1)."""
    kube.request(
        "PATCH",
        f"/api/v1/nodes/{node}/status",
        content_type="application/merge-patch+json",
        body={
            "status": {
                "conditions": [
                    {
                        "type": nvsentinel.XID_CONDITION,
                        "status": "True",
                        "reason": "SysLogsXIDErrorIsNotHealthy",
                        "message": f"ErrorCode:{xid}",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        },
    )


def test_gpu_sequence_events_build_the_report_timeline(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    logs = tmp_path / "events"
    logs.mkdir()

    def keep(step: str, result) -> None:
        assert result.returncode == 0, f"{step}: {result.stderr}"
        (logs / f"{step}.jsonl").write_text(result.stdout)

    keep("preflight", preflight(c, w))
    keep("inject-cuda-shim", inject(c, w, "--no-wait"))
    workers = [f"worker-{i}" for i in range(2)]
    labels = {"nvidia.com/dynamo-graph-deployment-name": "llm", "nvidia.com/dynamo-component-type": "worker"}
    for pod in workers:  # the rolled-out workers, on the target node
        w.kube.create(
            Ref("v1", "pods", w.ns, ""),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "labels": labels},
                "spec": {"nodeName": w.node, "containers": [{"name": "main", "image": "w:1"}]},
            },
        )
    kmsg = tmp_path / "kmsg"
    kmsg.write_bytes(b"")
    keep(
        "inject-xid",
        c.faultflow(
            "step",
            "inject-xid",
            "--xid",
            "79",
            "--kmsg-path",
            str(kmsg),
            "--run-id",
            w.run,
            "--proc-root",
            str(make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])),
            "--toggle-dir",
            str(w.toggle_dir),
        ),
    )
    proc = c.popen(
        "step",
        "wait-for-cordon",
        "--node",
        w.node,
        "--xid",
        "79",
        "--timeout",
        "60s",
        "--run-id",
        w.run,
        "--wait-evicted",
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
    )
    seen = [_read_until(proc, "watch_started")]
    simulate_nvsentinel_xid_condition(w.kube, w.node, 79)
    seen.append(_read_until(proc, EventName.XID_DETECTED))
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
    seen.append(_read_until(proc, EventName.NODE_CORDONED))
    for pod in workers:  # NVSentinel's drain, and the kubelet confirming each pod is gone
        w.kube.request("DELETE", f"/api/v1/namespaces/{w.ns}/pods/{pod}", query={"gracePeriodSeconds": "0"})
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    (logs / "wait-for-cordon.jsonl").write_text("".join(json.dumps(e) + "\n" for e in seen) + out)
    with KubeletSimulator(w.kube, roots={w.node: w.toggle_dir}):
        keep("cleanup-dgd", c.faultflow("step", "cleanup-dgd", "--run-id", w.run, "--namespace", w.ns))
    assert not toggle.read(w.toggle_dir / "toggle").on

    inputs = read_inputs(input_files([str(logs)]))
    report = build_report(inputs, Criteria(), "gpu-fault", w.run)
    canonical = [e["event"] for e in report["timeline"] if e["event"] in TIMELINE_LABELS]
    order = [
        EventName.FAULT_INJECTED,
        EventName.XID_DETECTED,
        EventName.NODE_CORDONED,
        EventName.PODS_EVICTED,
        EventName.DGD_RESTORED,
        EventName.FAULT_CLEARED,
    ]
    firsts = [canonical.index(name) for name in order]
    assert firsts == sorted(firsts), canonical
    assert canonical[0] == EventName.FAULT_INJECTED and canonical[-1] == EventName.FAULT_CLEARED
    # inject-xid injects two faults at once; the timeline tells them apart.
    injected = [e["label"] for e in report["timeline"] if e["event"] == EventName.FAULT_INJECTED]
    assert sorted(injected) == ["fault injected: cuda", "fault injected: xid 79"]
    assert [b.phase for b in boundaries(inputs.events)] == ["baseline", "fault", "remediation", "recovery"]
