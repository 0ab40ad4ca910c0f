"""Issue 15 item 6: the janitor handles each ledger entry on its own. A toggle-off pod that fails on one
node does not hold back the other runs (the sweep goes on and exits 3 at the end, for the next sweep
to retry), and a toggle on a NotReady node is deferred (no pod that could never run there, no wait
that eats the janitor's deadline). Against the real kube-apiserver; the KubeletSimulator has a disk
for the healthy node only, so the pod on the broken node fails as it would on a node whose hostPath
cannot be written."""

from __future__ import annotations

import json
import time

from steps.gpu import toggle
from steps.kube.client import Ref
from steps.run import ledger as L
from tests.dgd_samples import dgd_v1alpha1, dgd_v1beta1
from tests.support.cluster_world import HOME, KubeletSimulator, dgd_ref, make_gpu_node, make_namespace


def test_item6_janitor_goes_on_past_a_failed_entry_and_defers_not_ready_nodes(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    kube = c.kube()
    ns = f"jr-{unique}"
    make_namespace(kube, ns)
    make = dgd_v1alpha1 if c.version == "v1alpha1" else dgd_v1beta1
    runs = ("broken", "healthy", "notready")  # preflight order = ledger order: the broken one comes first
    before, disks = {}, {}
    for run in runs:
        node, name = f"jr-{run}-{unique}", f"llm-{run}"
        make_gpu_node(kube, node)
        obj = make(name=name, namespace=ns)
        kube.create(dgd_ref(obj), obj)
        before[run] = json.dumps(kube.get(dgd_ref(obj))["spec"], sort_keys=True)
        disks[run] = tmp_path / run
        disks[run].mkdir()
        c.faultflow(
            "step",
            "preflight",
            "--run-id",
            f"r-{run}-{unique}",
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
            str(disks[run]),
            "--ttl",
            "1s",
            check=True,
        )
        c.faultflow(
            "step",
            "inject-cuda-shim",
            "--run-id",
            f"r-{run}-{unique}",
            "--namespace",
            ns,
            "--target",
            f"dgd/{name}",
            "--xid",
            "79",
            "--toggle-dir",
            str(disks[run]),
            "--no-wait",
            check=True,
        )
        toggle.write(disks[run] / "toggle", toggle.Toggle(on=True, xid=79))
    kube.request(
        "PATCH",
        f"/api/v1/nodes/jr-notready-{unique}/status",
        content_type="application/merge-patch+json",
        body={
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "KubeletNotReady",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            }
        },
    )
    expires_ms = max(L.LedgerStore(kube, HOME).load(ns, f"r-{run}-{unique}").run.expires_ms for run in runs)
    time.sleep(max(0.0, expires_ms / 1000 - time.time()) + 0.01)  # the 1 s TTL: the clock itself, read from the ledgers

    roots = {f"jr-healthy-{unique}": disks["healthy"], f"jr-notready-{unique}": disks["notready"]}  # none for "broken"
    with KubeletSimulator(kube, roots=roots) as kubelet:
        sweep = c.faultflow("step", "janitor", "--namespace", ns, "--timeout", "20s")
    assert sweep.returncode == 3, sweep.stderr
    assert len(sweep.stderr.strip().splitlines()) == 1 and f"r-broken-{unique}/toggle-jr-broken-{unique}" in sweep.stderr
    events = [json.loads(line) for line in sweep.stdout.splitlines()]
    for run in runs:  # every workload restored, the broken and deferred toggles notwithstanding
        spec = json.dumps(kube.get(dgd_ref(make(name=f"llm-{run}", namespace=ns)))["spec"], sort_keys=True)
        assert spec == before[run], run
    assert not toggle.read(disks["healthy"] / "toggle").on  # after the broken run's failure
    assert toggle.read(disks["notready"] / "toggle").on  # deferred: no pod on a NotReady node
    assert [p["spec"]["nodeName"] for p in kubelet.pods].count(f"jr-notready-{unique}") == 0
    assert any(e["event"] == "revert_deferred" and e["run_id"] == f"r-notready-{unique}" for e in events)
    active = {ledger.run.run_id: [e.kind for e in ledger.active()] for ledger in L.LedgerStore(kube, HOME).all(ns)}
    assert active == {f"r-broken-{unique}": [L.NODE_TOGGLE], f"r-healthy-{unique}": [], f"r-notready-{unique}": [L.NODE_TOGGLE]}
    assert kube.list(Ref("v1", "pods", HOME, ""), label_selector=f"{L.RUN_LABEL}=r-broken-{unique}")["items"] == []
