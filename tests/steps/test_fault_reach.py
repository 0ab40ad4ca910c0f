"""Issue 15 item 4 (the parts outside the C shim): a fault must reach the workload, or the run says so.

Against the real kube-apiserver, worker logs served through its pods/log proxy by the KUBELET LOG
SIMULATOR (lab/kubelet_logs.py), the shim's lines as shim/control.c prints them:
* inject-cuda-shim resolves the node after its rollout: a target node without a Ready, shimmed worker
  is refused, and only that node's workers' markers count;
* wait-for-cordon's eviction wait does not pass when no worker was on the node;
* `fault_reached_workload`: watch-reach (a daemon from before the fault) / cleanup-dgd report whether
  the node's workers logged the shim injecting the XID — also when NVSentinel drains them right after
  the line — and the report makes it a required check for gpu-fault and cuda-only.
PCI-bus-id targeting inside the C shim is issue 17's (the shim helper's room), not tested here.
"""

from __future__ import annotations

import json
import signal
import subprocess

from lab.kubelet_logs import KubeletLogSimulator
from steps.events import Event
from steps.kube.client import Ref
from steps.report.inputs import input_files, read_inputs
from steps.report.journal import Criteria, build_report
from steps.workload.reach import FAULT_REACHED
from tests.steps.run_fixtures import FAULT, T0, write_run
from tests.steps.test_gpu_cluster import _read_until, make_world, preflight
from tests.steps.test_shim_marker import start_workers
from tests.support.cluster_world import make_gpu_node, simulate_dgd_operator_rollout, simulate_nvsentinel_quarantine

LABELS = {"nvidia.com/dynamo-graph-deployment-name": "llm", "nvidia.com/dynamo-component-type": "worker"}
# shim/control.c ff_report(): one line per XID it starts injecting.
INJECTING = "faultflow-shim: injecting XID 79 (GPU has fallen off the bus): cudaLaunchKernel returns 999\n"


def _worker(kube, kubelet, ns: str, node: str, name: str, log: str) -> None:
    kube.create(
        Ref("v1", "pods", ns, ""),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": LABELS},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "worker:1"}]},
        },
    )
    kube.request(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{name}/status",
        content_type="application/merge-patch+json",
        body={"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    kubelet.register(ns, name, "main").write_text(log)


def test_item4_inject_refuses_a_target_node_without_a_ready_shimmed_worker(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    elsewhere = f"other-{unique}"
    make_gpu_node(w.kube, elsewhere)
    with KubeletLogSimulator(tmp_path / "logs", c.lab.pki) as kubelet:
        for node in (w.node, elsewhere):
            w.kube.request(
                "PATCH", f"/api/v1/nodes/{node}/status", content_type="application/merge-patch+json", body={"status": kubelet.node_status()}
            )
        assert preflight(c, w).returncode == 0  # the target: w.node
        proc = c.popen(
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
            "--timeout",
            "60s",
        )
        _read_until(proc, "shim_patched")
        # The rollout put every (shimmed) worker on another node.
        start_workers(w.kube, kubelet, w.ns, elsewhere, w.kube.get(w.ref), with_shim=True)
        simulate_dgd_operator_rollout(w.kube, w.ref)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err
    assert len(err.strip().splitlines()) == 1 and f"on the target node {w.node}" in err


def test_item4_wait_for_cordon_does_not_pass_when_no_worker_was_on_the_node(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    proc = c.popen(
        "step",
        "wait-for-cordon",
        "--node",
        w.node,
        "--xid",
        "79",
        "--timeout",
        "60s",
        "--wait-evicted",
        "--eviction-timeout",
        "30s",
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
    )
    _read_until(proc, "watch_started")
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, (out, err)
    assert "node_cordoned" in out and "pods_evicted" not in out and "nothing to evict" in err


def test_item4_wait_for_cordon_passes_when_the_drain_beat_it_to_workers_confirmed_before_the_fault(gpu_cluster, unique, tmp_path):
    """NVSentinel drained the node before the step's first look; inject-cuda-shim had confirmed a worker
    there before the fault (--workers-confirmed): the workers were evicted, not absent."""
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    proc = c.popen(
        "step",
        "wait-for-cordon",
        "--node",
        w.node,
        "--xid",
        "79",
        "--timeout",
        "60s",
        "--wait-evicted",
        "--workers-confirmed",
        "--eviction-timeout",
        "30s",
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
    )
    _read_until(proc, "watch_started")
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, (out, err)
    assert "node_cordoned" in out and "pods_evicted" in out


def _reach_events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and FAULT_REACHED in line]


def _watch_reach(c, w, outputs) -> tuple[subprocess.Popen, dict]:
    proc = c.popen(
        "step", "watch-reach", "--node", w.node, "--xid", "79", "--namespace", w.ns, "--target", "dgd/llm", "--outputs-dir", str(outputs)
    )
    started = _read_until(proc, "watch_started")
    assert (outputs / "watching").is_file()  # ready: what the fault stages wait for
    return proc, started


def _drain(w, kubelet, pod: str) -> None:
    """NVSentinel's drain as the worker sees it: its container stops and the pod is deleted, at once."""
    kubelet.stop(w.ns, pod, "main")
    w.kube.request("DELETE", f"/api/v1/namespaces/{w.ns}/pods/{pod}", query={"gracePeriodSeconds": "0"})


def _stopped(proc) -> tuple[list[dict], str]:
    """SIGTERM (the DAG's end); the daemon's fault_reached_workload events and its stderr."""
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return _reach_events(out), err


def test_item4_watch_reach_keeps_the_evidence_when_the_workers_are_drained_at_once(gpu_cluster, unique, tmp_path):
    """The race of issue 15 item 4: the workers log the line and are deleted right away, before any
    later step could look; the daemon followed them from before the fault, so the check still passes."""
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    with KubeletLogSimulator(tmp_path / "logs", c.lab.pki) as kubelet:
        w.kube.request(
            "PATCH", f"/api/v1/nodes/{w.node}/status", content_type="application/merge-patch+json", body={"status": kubelet.node_status()}
        )
        _worker(w.kube, kubelet, w.ns, w.node, "llm-worker-0", "faultflow-shim: loaded ...\n")
        _worker(w.kube, kubelet, w.ns, w.node, "llm-worker-1", "faultflow-shim: loaded ...\n")
        proc, started = _watch_reach(c, w, tmp_path / "out")
        assert started["workers"] == 2 and started["read"] == ["llm-worker-0", "llm-worker-1"] and started["reached"] == []
        # The fault: worker 0 logs the line (an XID 43 line before it is not ours), and both are drained at once.
        with kubelet.log_file(w.ns, "llm-worker-0", "main").open("a") as log:
            log.write(INJECTING.replace("XID 79 (GPU has fallen off the bus)", "XID 43 (GPU stopped processing)") + INJECTING)
        for pod in ("llm-worker-0", "llm-worker-1"):
            _drain(w, kubelet, pod)
        first = _read_until(proc, FAULT_REACHED)  # reported as soon as it was seen
        assert w.kube.get_or_none(Ref("v1", "pods", w.ns, "llm-worker-0")) is None  # nobody can read it any more
        events, _ = _stopped(proc)
    assert first["reached"] == ["llm-worker-0"]
    final = events[-1]
    assert final["reached"] == ["llm-worker-0"] and final["read"] == ["llm-worker-0", "llm-worker-1"] and final["workers"] == 2
    checks = _report(tmp_path, "raced", [_as_event(e) for e in [first, *events]], True)
    assert checks[FAULT_REACHED]["status"] == "passed"


def test_item4_watch_reach_follows_a_worker_that_lands_on_the_node_later(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    with KubeletLogSimulator(tmp_path / "logs", c.lab.pki) as kubelet:
        w.kube.request(
            "PATCH", f"/api/v1/nodes/{w.node}/status", content_type="application/merge-patch+json", body={"status": kubelet.node_status()}
        )
        _worker(w.kube, kubelet, w.ns, w.node, "llm-worker-0", "faultflow-shim: loaded ...\n")
        proc, _ = _watch_reach(c, w, tmp_path / "out")
        _worker(w.kube, kubelet, w.ns, w.node, "llm-worker-9", "faultflow-shim: loaded ...\n" + INJECTING)
        hit = _read_until(proc, FAULT_REACHED)
        events, _ = _stopped(proc)
    assert hit["reached"] == ["llm-worker-9"] and events[-1]["workers"] == 2


def test_item4_watch_reach_fails_the_check_when_no_worker_logs_the_line(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    with KubeletLogSimulator(tmp_path / "logs", c.lab.pki) as kubelet:
        w.kube.request(
            "PATCH", f"/api/v1/nodes/{w.node}/status", content_type="application/merge-patch+json", body={"status": kubelet.node_status()}
        )
        _worker(w.kube, kubelet, w.ns, w.node, "llm-worker-0", "faultflow-shim: loaded ...\n")
        proc, _ = _watch_reach(c, w, tmp_path / "out")
        with kubelet.log_file(w.ns, "llm-worker-0", "main").open("a") as log:
            log.write("cudaLaunchKernel ok\n")  # the fault missed it
        _drain(w, kubelet, "llm-worker-0")
        events, _ = _stopped(proc)
    [final] = events
    assert final["reached"] == [] and final["read"] == ["llm-worker-0"] and final["workers"] == 1
    failed = _report(tmp_path, "missed", [_as_event(final)], True)[FAULT_REACHED]
    assert failed["status"] == "failed" and "(1 of 1 worker logs read)" in failed["reason"]


def test_item4_watch_reach_refuses_bad_input_before_connecting(gpu_cluster, tmp_path):
    done = gpu_cluster.faultflow("step", "watch-reach", "--node", "n", "--xid", "79", "--namespace", "ns", "--target", "dgd/x")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--outputs-dir" in done.stderr


def _as_event(fields: dict) -> Event:
    rest = {k: v for k, v in fields.items() if k not in ("step", "event", "time", "ts")}
    return Event(step=fields["step"], event=fields["event"], fields=rest, time=T0 + FAULT + 1)


def test_item4_cleanup_reports_reach_before_restoring(gpu_cluster, unique, tmp_path):
    """cuda-only: no drain, so cleanup-dgd reads the node's workers before its restore rolls them."""
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    with KubeletLogSimulator(tmp_path / "logs", c.lab.pki) as kubelet:
        w.kube.request(
            "PATCH", f"/api/v1/nodes/{w.node}/status", content_type="application/merge-patch+json", body={"status": kubelet.node_status()}
        )
        assert preflight(c, w).returncode == 0
        assert (
            c.faultflow(
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
            ).returncode
            == 0
        )
        _worker(w.kube, kubelet, w.ns, w.node, "llm-worker-0", "faultflow-shim: loaded ...\n")  # never saw a failing call
        done = c.faultflow("step", "cleanup-dgd", "--run-id", w.run, "--namespace", w.ns, "--no-toggle-off", "--expect-cuda-faults")
    assert done.returncode == 0, done.stderr
    [event] = _reach_events(done.stdout)
    assert event["reached"] == [] and event["read"] == ["llm-worker-0"]


def _report(tmp_path, name: str, extra: list[Event], expect: bool) -> dict:
    """The report over the synthetic run of run_fixtures (faulted, recovered) plus `extra` events."""
    inputs = read_inputs(input_files([str(write_run(tmp_path / name, extra))]))
    report = build_report(inputs, Criteria(expect_workload_reached=expect), "gpu-fault", "r")
    return {c["name"]: c for c in report["checks"]}


def test_item4_report_requires_fault_reached_workload_for_the_cuda_scenarios(tmp_path):
    t = T0 + FAULT + 1
    hit = Event(
        step="wait-for-cordon", event=FAULT_REACHED, fields={"node": "n", "xid": 79, "workers": 1, "read": ["p"], "reached": ["p"]}, time=t
    )
    miss = Event(
        step="wait-for-cordon", event=FAULT_REACHED, fields={"node": "n", "xid": 79, "workers": 1, "read": ["p"], "reached": []}, time=t
    )
    assert _report(tmp_path, "hit", [hit], True)[FAULT_REACHED]["status"] == "passed"
    missed = _report(tmp_path, "miss", [miss], True)[FAULT_REACHED]
    assert missed["status"] == "failed" and "no worker on node n" in missed["reason"]
    assert _report(tmp_path, "none", [], True)[FAULT_REACHED]["status"] == "failed"  # nobody looked
    assert FAULT_REACHED not in _report(tmp_path, "off", [], False)  # xid-only, the network scenarios
