"""GPU fault steps against a real kube-apiserver (DGD v1alpha1 and v1beta1 clusters)."""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from steps.gpu import toggle
from steps.kube.client import Conflict, Kube, Ref
from steps.run import ledger as L
from steps.workload import shim_patch
from tests.dgd_samples import dgd_v1alpha1, dgd_v1beta1
from tests.support.cluster_world import (
    KubeletSimulator,
    dgd_ref,
    make_gpu_node,
    make_namespace,
    simulate_dgd_operator_rollout,
    simulate_nvsentinel_quarantine,
    simulate_nvsentinel_uncordon,
)


@dataclass
class World:
    kube: Kube
    ns: str
    node: str
    ref: Ref
    toggle_dir: Path
    run: str

    def spec(self) -> str:
        return json.dumps(self.kube.get(self.ref)["spec"], sort_keys=True)

    def node_view(self) -> str:
        obj = self.kube.get(Ref("v1", "nodes", None, self.node))
        return json.dumps(
            {"spec": obj.get("spec"), "labels": obj["metadata"].get("labels"), "annotations": obj["metadata"].get("annotations")},
            sort_keys=True,
        )


def make_world(c, unique, tmp_path) -> World:
    kube = c.kube()
    ns, node = f"ns-{unique}", f"gpu-{unique}"
    make_namespace(kube, ns)
    make_gpu_node(kube, node)
    sample = (dgd_v1alpha1 if c.version == "v1alpha1" else dgd_v1beta1)(name="llm", namespace=ns)
    kube.create(dgd_ref(sample), sample)
    toggle_dir = tmp_path / f"toggle-{unique}"
    toggle_dir.mkdir()
    return World(kube, ns, node, dgd_ref(sample), toggle_dir, f"run-{unique}")


def preflight(c, w: World, *extra: str, xid: str = "79"):
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
        xid,
        "--expect-remediation=false",
        "--toggle-dir",
        str(w.toggle_dir),
        "--steps-image",
        "steps:1",
        *extra,
    )


def inject(c, w: World, *extra: str):
    return c.faultflow(
        "step",
        "inject-cuda-shim",
        "--run-id",
        w.run,
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
        "--shim-image",
        "shim:1",
        "--xid",
        "79",
        "--toggle-dir",
        str(w.toggle_dir),
        *extra,
    )


def cleanup(c, w: World, *extra: str):
    return c.faultflow("step", "cleanup-dgd", "--run-id", w.run, "--namespace", w.ns, *extra)


def events(stdout: str) -> list[str]:
    return [json.loads(line)["event"] for line in stdout.splitlines() if line.startswith("{")]


def test_full_sequence_inject_cleanup_is_byte_identical(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    before = w.spec()
    assert preflight(c, w).returncode == 0
    first = inject(c, w, "--no-wait")
    assert first.returncode == 0, first.stderr
    after_once = w.spec()
    assert after_once != before and "faultflow-shim-init" in after_once
    second = inject(c, w, "--no-wait")
    assert second.returncode == 0 and w.spec() == after_once  # inject twice = once
    assert json.loads(second.stdout.splitlines()[0])["already"] is True
    # The rolled-out worker, Ready on the target node (inject-cuda-shim refuses a node without one).
    labels = {"nvidia.com/dynamo-graph-deployment-name": "llm", "nvidia.com/dynamo-component-type": "worker"}
    w.kube.create(
        Ref("v1", "pods", w.ns, ""),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "llm-worker-0", "labels": labels},
            "spec": {"nodeName": w.node, "containers": [{"name": "main", "image": "w:1"}]},
        },
    )
    w.kube.request(
        "PATCH",
        f"/api/v1/namespaces/{w.ns}/pods/llm-worker-0/status",
        content_type="application/merge-patch+json",
        body={"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
    )
    # The rollout wait is a real watch: the operator simulator reports the rollout done.
    threading.Timer(0.5, simulate_dgd_operator_rollout, (w.kube, w.ref)).start()
    waited = inject(c, w, "--timeout", "30s", "--no-verify-marker")
    assert waited.returncode == 0, waited.stderr
    assert "rollout_done" in events(waited.stdout)
    with KubeletSimulator(w.kube, roots={w.node: w.toggle_dir}) as kubelet:
        toggle.write(w.toggle_dir / "toggle", toggle.Toggle(on=True, xid=79))
        done = cleanup(c, w)
        assert done.returncode == 0, done.stderr
        assert kubelet.ran, "the toggle-off pod never ran"
    assert set(events(done.stdout)) == {"dgd_restored", "fault_cleared"}
    assert w.spec() == before  # byte-identical spec
    assert shim_patch.OWNER_ANNOTATION not in (w.kube.get(w.ref)["metadata"].get("annotations") or {})
    assert not toggle.read(w.toggle_dir / "toggle").on
    again = cleanup(c, w)
    assert again.returncode == 0 and events(again.stdout) == ["already_clean"] and w.spec() == before


def test_concurrent_planner_replica_change_survives(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    assert preflight(c, w).returncode == 0
    worker = "VllmDecodeWorker" if c.version == "v1alpha1" else "worker"
    stop = threading.Event()
    written = []

    def planner():
        n = 2
        while not stop.is_set():
            w.kube.get(w.ref)  # a planner reads the object before it writes
            if c.version == "v1alpha1":
                ops = [{"op": "replace", "path": f"/spec/services/{worker}/replicas", "value": n}]
            else:
                ops = [
                    {"op": "test", "path": "/spec/components/1/name", "value": worker},
                    {"op": "replace", "path": "/spec/components/1/replicas", "value": n},
                ]
            try:
                w.kube.json_patch(w.ref, ops)
                written.append(n)
            except Conflict:
                pass
            n += 1
            stop.wait(0.02)  # a (very busy) planner's write rate, not a stand-in for a condition

    thread = threading.Thread(target=planner)
    thread.start()
    try:
        assert inject(c, w, "--no-wait").returncode == 0
        assert cleanup(c, w, "--no-toggle-off").returncode == 0
    finally:
        stop.set()
        thread.join()
    obj = w.kube.get(w.ref)
    comps = obj["spec"]["services"] if c.version == "v1alpha1" else {x["name"]: x for x in obj["spec"]["components"]}
    assert comps[worker]["replicas"] == written[-1] and len(written) > 1  # the planner's last write survived
    assert "faultflow" not in json.dumps(obj["spec"])  # and the shim is fully gone


def test_wait_for_cordon_fatal_reports_latency(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    proc = c.popen("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--timeout", "60s", "--outputs-dir", str(tmp_path / "out"))
    time.sleep(0)  # the step lists and watches; the quarantine may land before or after its list
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "node_cordoned" in events(out)
    assert int((tmp_path / "out" / "detection-latency-ms").read_text()) >= 0


def test_wait_for_cordon_non_fatal_must_not_cordon(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    quiet = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "43", "--timeout", "2s")
    assert quiet.returncode == 0 and "node_not_cordoned" in events(quiet.stdout)
    simulate_nvsentinel_quarantine(w.kube, w.node, 43)
    loud = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "94", "--timeout", "2s")
    assert loud.returncode == 1 and "non-fatal" in loud.stderr


def test_wait_for_cordon_times_out_when_not_quarantined(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    # Only cordoned (no NVSentinel annotation/label): not NVSentinel's quarantine.
    w.kube.merge_patch(Ref("v1", "nodes", None, w.node), {"spec": {"unschedulable": True}})
    result = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--timeout", "2s")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1


def test_restore_node_uncordons_only_a_node_found_schedulable(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    other = f"other-{unique}"
    make_gpu_node(w.kube, other, unschedulable=True)
    node_before = w.node_view()
    assert preflight(c, w, "--restore-node").returncode == 0
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
    simulate_nvsentinel_uncordon(w.kube, w.node)  # healthy event cleared FQ's marks, node still cordoned
    skipped = c.faultflow("step", "restore-node", "--run-id", w.run, "--namespace", w.ns)
    assert skipped.returncode == 0 and w.kube.get(Ref("v1", "nodes", None, w.node))["spec"]["unschedulable"]
    done = c.faultflow("step", "restore-node", "--run-id", w.run, "--namespace", w.ns, "--restore-node")
    assert done.returncode == 0, done.stderr
    assert w.node_view() == node_before
    assert w.kube.get(Ref("v1", "nodes", None, other))["spec"]["unschedulable"] is True


def test_faults_list_and_recover(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    before = w.spec()
    assert preflight(c, w).returncode == 0 and inject(c, w, "--no-wait").returncode == 0
    listing = json.loads(c.faultflow("faults", "list", "--json", "--namespace", w.ns).stdout)
    assert {(r["run"], r["kind"]) for r in listing} == {(w.run, L.WORKLOAD_SHIM), (w.run, L.NODE_TOGGLE)}
    assert all(r["expires_at"] > r["injected_at"] for r in listing)
    table = c.faultflow("faults", "list", "--namespace", w.ns).stdout
    assert table.splitlines()[0].split() == ["RUN", "KIND", "TARGET", "INJECTED_AT", "EXPIRES_AT", "STATE"]
    with KubeletSimulator(w.kube, roots={w.node: w.toggle_dir}):
        recovered = c.faultflow("faults", "recover", w.run, "--namespace", w.ns)
    assert recovered.returncode == 0, recovered.stderr
    assert w.spec() == before
    assert json.loads(c.faultflow("faults", "list", "--json", "--namespace", w.ns).stdout) == []


def test_janitor_leaves_live_runs_alone(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    assert preflight(c, w).returncode == 0 and inject(c, w, "--no-wait").returncode == 0
    patched = w.spec()
    sweep = c.faultflow("step", "janitor", "--namespace", w.ns)
    assert sweep.returncode == 0 and w.spec() == patched  # inside its TTL, no workflow recorded: live


# --- kill matrix ----------------------------------------------------------------------------------

KILL_POINTS = [
    # (step, when): "start+S" = S seconds after spawn; "event:NAME" = right after that event line.
    ("preflight", "start+0.05"),
    ("preflight", "start+0.6"),
    ("inject-cuda-shim", "start+0.05"),
    ("inject-cuda-shim", "start+0.7"),
    ("inject-cuda-shim", "event:shim_patched"),
    ("wait-for-cordon", "start+0.3"),
    ("wait-for-cordon", "event:watch_started"),
    ("cleanup-dgd", "start+0.3"),
    ("cleanup-dgd", "start+0.8"),
    ("restore-node", "start+0.3"),
    ("restore-node", "start+0.8"),
    ("janitor", "start+0.6"),
    ("janitor", "start+1.2"),
]

# What ran (to completion, or crashed) before the step under test. The janitor is killed on a crashed
# run: the scenario's inject-cuda-shim died with the shim in place, so there is something to revert.
BEFORE = {
    "preflight": [],
    "inject-cuda-shim": ["preflight"],
    "wait-for-cordon": ["preflight", "inject-cuda-shim"],
    "cleanup-dgd": ["preflight", "inject-cuda-shim", "wait-for-cordon"],
    "restore-node": ["preflight", "inject-cuda-shim", "wait-for-cordon", "cleanup-dgd"],
    "janitor": ["preflight", "inject-cuda-shim", "wait-for-cordon"],
}


def _spawn(c, w: World, step: str):
    common = ["--run-id", w.run, "--namespace", w.ns]
    if step == "preflight":
        return c.popen(
            "step",
            "preflight",
            *common,
            "--target",
            "dgd/llm",
            "--node",
            w.node,
            "--xid",
            "79",
            "--expect-remediation=false",
            "--toggle-dir",
            str(w.toggle_dir),
            "--steps-image",
            "steps:1",
            "--workflow-name",
            f"wf-{w.run}",
            "--restore-node",
        )
    if step == "inject-cuda-shim":
        return c.popen(
            "step",
            "inject-cuda-shim",
            *common,
            "--target",
            "dgd/llm",
            "--shim-image",
            "shim:1",
            "--xid",
            "79",
            "--toggle-dir",
            str(w.toggle_dir),
            "--timeout",
            "60s",
        )
    if step == "wait-for-cordon":
        return c.popen("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--timeout", "60s", "--run-id", w.run)
    if step == "restore-node":
        return c.popen("step", "restore-node", *common, "--restore-node")
    if step == "janitor":
        return c.popen("step", "janitor", "--namespace", w.ns, "--timeout", "20s")
    return c.popen("step", "cleanup-dgd", *common, "--timeout", "20s")


def _kill_at(proc, when: str, sig) -> None:
    if when.startswith("start+"):
        time.sleep(float(when[6:]))  # a point in the step's life, not a stand-in for a condition
    else:
        name = when.split(":", 1)[1]
        for line in proc.stdout:
            if line.startswith("{") and json.loads(line)["event"] == name:
                break
    proc.send_signal(sig)
    proc.communicate(timeout=60)


def _run_before(c, w: World, step: str) -> None:
    for earlier in BEFORE[step]:
        if earlier == "wait-for-cordon":
            simulate_nvsentinel_quarantine(w.kube, w.node, 79)  # NVSentinel reacts to the XID
        p = _spawn(c, w, earlier)
        if earlier == "inject-cuda-shim":
            _kill_at(p, "event:shim_patched", signal.SIGKILL)  # leave the shim in place, as a crash would
            toggle.write(w.toggle_dir / "toggle", toggle.Toggle(on=True, xid=79))  # inject-xid ran
        else:
            p.communicate(timeout=60)
        if earlier == "wait-for-cordon":
            simulate_nvsentinel_uncordon(w.kube, w.node)  # healthy again: FQ's marks go, the cordon stays


def test_kill_matrix_janitor_restores_everything(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    leftovers, total = [], 0
    for step, when in KILL_POINTS:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            w = make_world(c, f"{unique}-{total}", tmp_path)
            spec0, node0 = w.spec(), w.node_view()
            with KubeletSimulator(w.kube, roots={w.node: w.toggle_dir}):
                _run_before(c, w, step)  # the scenario up to the step under test
                _kill_at(_spawn(c, w, step), when, sig)
                if step == "wait-for-cordon":  # the quarantine comes whether or not the step still watches
                    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
                    simulate_nvsentinel_uncordon(w.kube, w.node)
                # The workflow is gone (never created / deleted): the janitor must revert the run.
                janitor = c.faultflow("step", "janitor", "--namespace", w.ns, "--timeout", "20s")
                # The janitor never uncordons (issue 15): a person lifts the cordon the run found absent.
                recover = c.faultflow("faults", "recover", "--all", "--namespace", w.ns, "--uncordon", "--timeout", "20s")
            total += 1
            toggle_file = w.toggle_dir / "toggle"
            clean = (
                janitor.returncode == 0
                and recover.returncode == 0
                and w.spec() == spec0
                and w.node_view() == node0
                and (not toggle_file.exists() or not toggle.read(toggle_file).on)
            )
            if not clean:
                leftovers.append(
                    f"{step}@{when}/{sig.name}: rc={janitor.returncode} spec={w.spec() == spec0} "
                    f"node={w.node_view() == node0} {janitor.stderr.strip()[-300:]} {janitor.stdout[-300:]}"
                )
    print(f"leftovers after kill matrix: {len(leftovers)} of {total}")
    assert leftovers == [], "\n".join(leftovers)


# --- wait-for-cordon across 410 Gone ---------------------------------------------------------------


def _read_until(proc, name: str) -> dict:
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line)["event"] == name:
            return json.loads(line)
    raise AssertionError(f"the step ended before {name!r}: {proc.communicate(timeout=30)[1]}")


def test_wait_for_cordon_relists_after_410_and_still_sees_the_quarantine(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    # Watch connections of ~2 s: the step keeps reconnecting from the resourceVersion it last saw.
    proc = c.popen("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--timeout", "90s", "--watch-timeout", "1s")
    _read_until(proc, "watch_started")  # listed: its resourceVersion is fixed now
    # Writes the step does not watch move etcd on; compaction then discards the step's revision, so its
    # next reconnect is refused with 410 Gone (etcd's compaction, as in a long-lived cluster).
    for i in range(3):
        w.kube.merge_patch(Ref("v1", "namespaces", None, w.ns), {"metadata": {"labels": {"faultflow-test-bump": str(i)}}})
    c.lab.etcd.compact()
    relisted = _read_until(proc, "watch_relisted")
    assert "410" in relisted["reason"]
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert events(out)[-1] == "node_cordoned"
