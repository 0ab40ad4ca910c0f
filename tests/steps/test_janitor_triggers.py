"""What makes the janitor revert a run, against the real kube-apiserver with real Argo Workflow objects
(the CRD is installed in every lab cluster): a TTL that passed, a workflow that finished (Succeeded,
Failed, Error), was deleted, or was replaced by a same-named one with another uid. A live run (inside
its TTL, workflow Running) is left alone. One sweep over one namespace holding all of them."""

from __future__ import annotations

import json
import time

from steps.gpu import toggle
from steps.kube.client import Ref
from steps.run import ledger as L
from tests.dgd_samples import dgd_v1alpha1, dgd_v1beta1
from tests.support.cluster_world import HOME, KubeletSimulator, dgd_ref, make_gpu_node, make_namespace

WORKFLOWS = Ref("argoproj.io/v1alpha1", "workflows", None, "")

# run → (workflow phase or what happened to it, preflight --ttl, expected janitor reason or None = live)
RUNS = {
    "live": ("Running", "2h", None),
    "succeeded": ("Succeeded", "2h", "workflow-finished"),
    "failed": ("Failed", "2h", "workflow-finished"),
    "error": ("Error", "2h", "workflow-finished"),
    "deleted": ("deleted", "2h", "workflow-gone"),
    "replaced": ("replaced", "2h", "workflow-gone"),
    # issue 15 item 7: the Workflow's phase is asked first — a running Workflow is live past the TTL;
    # the TTL decides for a run without a Workflow.
    "expired-but-running": ("Running", "1s", None),
    "expired": ("none", "1s", "ttl-expired"),
}


def workflow(name: str, phase: str) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "container": {"image": "steps:1"}}]},
        "status": {"phase": phase},
    }


def test_janitor_reverts_expired_finished_and_gone_runs_only(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    kube = c.kube()
    ns = f"jt-{unique}"
    make_namespace(kube, ns)
    make = dgd_v1alpha1 if c.version == "v1alpha1" else dgd_v1beta1
    wfs = Ref(WORKFLOWS.api_version, WORKFLOWS.plural, HOME, "")  # faultflow's Workflows run in its namespace
    before, patched, toggles = {}, {}, {}
    for run, (phase, ttl, _) in RUNS.items():
        node, name = f"{run}-{unique}", f"llm-{run}"
        make_gpu_node(kube, node)
        obj = make(name=name, namespace=ns)
        kube.create(dgd_ref(obj), obj)
        ref = dgd_ref(obj)
        before[run] = json.dumps(kube.get(ref)["spec"], sort_keys=True)
        wf_name = f"wf-{run}-{unique}"
        owner = []
        if phase != "none":
            wf = kube.create(wfs, workflow(wf_name, "Running" if phase in ("deleted", "replaced") else phase))
            owner = ["--workflow-name", wf_name, "--workflow-uid", wf["metadata"]["uid"]]
        tdir = tmp_path / run
        tdir.mkdir()
        c.faultflow(
            "step",
            "preflight",
            "--run-id",
            f"r-{run}",
            "--namespace",
            ns,
            "--target",
            f"dgd/{name}",
            "--node",
            node,
            "--xid",
            "79",
            "--expect-remediation=false",
            "--toggle-dir",
            str(tdir),
            "--steps-image",
            "steps:1",
            "--ttl",
            ttl,
            *owner,
            check=True,
        )
        c.faultflow(
            "step",
            "inject-cuda-shim",
            "--run-id",
            f"r-{run}",
            "--namespace",
            ns,
            "--target",
            f"dgd/{name}",
            "--shim-image",
            "shim:1",
            "--xid",
            "79",
            "--toggle-dir",
            str(tdir),
            "--no-wait",
            check=True,
        )
        toggles[run] = tdir / "toggle"
        toggle.write(toggles[run], toggle.Toggle(on=True, xid=79))  # inject-xid ran on the node
        patched[run] = json.dumps(kube.get(ref)["spec"], sort_keys=True)
        assert patched[run] != before[run]
        if phase in ("deleted", "replaced"):
            kube.delete(Ref(wfs.api_version, wfs.plural, HOME, wf_name))
        if phase == "replaced":  # a new workflow under the old name: not the run's
            assert kube.create(wfs, workflow(wf_name, "Running"))["metadata"]["uid"] != wf["metadata"]["uid"]
    # The 1 s TTL: wait for the clock to pass it (the condition itself, read from the ledger).
    expires_ms = max(L.LedgerStore(kube).load(ns, f"r-{run}").run.expires_ms for run in ("expired", "expired-but-running"))
    time.sleep(max(0.0, expires_ms / 1000 - time.time()) + 0.01)

    with KubeletSimulator(kube, roots={f"{run}-{unique}": tmp_path / run for run in RUNS}):
        sweep = c.faultflow("step", "janitor", "--namespace", ns, "--timeout", "30s")
    assert sweep.returncode == 0, sweep.stderr
    reasons = {}
    for line in sweep.stdout.splitlines():
        event = json.loads(line)
        if event["event"] == "dgd_restored":
            reasons[event["run_id"]] = event["reason"]
    assert reasons == {f"r-{run}": reason for run, (_, _, reason) in RUNS.items() if reason}
    for run, (_, _, reason) in RUNS.items():
        spec = json.dumps(kube.get(dgd_ref(make(name=f"llm-{run}", namespace=ns)))["spec"], sort_keys=True)
        if reason:
            assert spec == before[run] and not toggle.read(toggles[run]).on, run
        else:
            assert spec == patched[run] and toggle.read(toggles[run]).on, run  # live: untouched
