"""Issue 15 item 1: forged ledgers do not steer the janitor (nor `faults list/recover`).

Against the real kube-apiserver: a real run (preflight + inject-cuda-shim) leaves a DGD patched and
annotated with its run id; then forged ledgers, expired (TTL long past, so the janitor would act at
once), name that DGD, a clean DGD, a node cordoned by someone else, someone's NetworkPolicy, a
ConfigMap, objects in other namespaces, and carry their own image, host path and pod namespace for
the toggle-off pod. Every one of them must change nothing (the toggle-off pod may run, but only as the
installation configures it).
"""

from __future__ import annotations

import json

from steps.kube.client import Ref
from steps.run import ledger as L
from tests.dgd_samples import dgd_v1alpha1, dgd_v1beta1
from tests.support.cluster_world import (
    HOME,
    NODE_AGENT_IMAGE,
    TOGGLE_DIR,
    KubeletSimulator,
    dgd_ref,
    make_gpu_node,
    make_namespace,
)

POLICIES = Ref("networking.k8s.io/v1", "networkpolicies", None, "")


class Site:
    """An opted-in namespace with a live run's patched DGD, a clean DGD and someone's NetworkPolicy; a
    second opted-in namespace and a closed (not opted-in) one with a DGD each; a node cordoned by
    someone else."""

    def __init__(self, c, unique: str, tmp_path):
        self.c, self.kube = c, c.kube()
        self.ns, self.ns2, self.closed = f"fl-{unique}", f"fl2-{unique}", f"flc-{unique}"
        make_namespace(self.kube, self.ns)
        make_namespace(self.kube, self.ns2)
        make_namespace(self.kube, self.closed, opted_in=False)
        self.node = f"fl-{unique}"
        make_gpu_node(self.kube, self.node)
        self.make = dgd_v1alpha1 if c.version == "v1alpha1" else dgd_v1beta1
        self.dgds = []
        for name, namespace in (("llm", self.ns), ("clean", self.ns), ("llm", self.ns2), ("llm", self.closed)):
            obj = self.make(name=name, namespace=namespace)
            self.kube.create(dgd_ref(obj), obj)
            self.dgds.append(dgd_ref(obj))
        self.victim = f"victim-{unique}"
        toggle_dir = tmp_path / "toggle"
        toggle_dir.mkdir()
        c.faultflow(
            "step",
            "preflight",
            "--run-id",
            self.victim,
            "--namespace",
            self.ns,
            "--target",
            "dgd/llm",
            "--node",
            self.node,
            "--xid",
            "79",
            "--expect-remediation=false",
            "--toggle-dir",
            str(toggle_dir),
            check=True,
        )
        c.faultflow(
            "step",
            "inject-cuda-shim",
            "--run-id",
            self.victim,
            "--namespace",
            self.ns,
            "--target",
            "dgd/llm",
            "--xid",
            "79",
            "--toggle-dir",
            str(toggle_dir),
            "--no-wait",
            check=True,
        )
        # A maintenance cordon, not ours (after the victim's preflight, which refuses a cordoned node).
        self.kube.merge_patch(Ref("v1", "nodes", None, self.node), {"spec": {"unschedulable": True}})
        self.kube.create(
            Ref(POLICIES.api_version, POLICIES.plural, self.ns, ""),
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "keep", "labels": {L.RUN_LABEL: "someone-else"}},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            },
        )
        self.victim_entry = L.LedgerStore(self.kube, HOME).load(self.ns, self.victim).entries["shim-dynamographdeployments-llm"]
        self.roots = {self.node: tmp_path / "node-disk"}
        self.roots[self.node].mkdir()

    def state(self) -> str:
        """Everything a forged ledger could try to change, as one comparable text."""
        k = self.kube
        view = {
            "dgds": [k.get(r)["spec"] for r in self.dgds],
            "annotations": [k.get(r)["metadata"].get("annotations") for r in self.dgds],
            "node": k.get(Ref("v1", "nodes", None, self.node))["spec"],
            "policies": sorted(p["metadata"]["name"] for p in k.list(Ref(POLICIES.api_version, POLICIES.plural, self.ns, ""))["items"]),
            "config": k.get(Ref("v1", "configmaps", HOME, "faultflow-config"))["data"],
            "pods": sorted(f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in k.list(Ref("v1", "pods", None, ""))["items"]),
        }
        return json.dumps(view, sort_keys=True)

    def forged(self, run_id: str, namespace: str, entries: list[L.Entry], restore_node: bool = True) -> L.Ledger:
        run = L.RunInfo(
            run_id=run_id, namespace=namespace, created_ms=0, ttl_s=1, node=self.node, xid=79, target="dgd/llm", restore_node=restore_node
        )  # expired since 1970
        return L.Ledger(run=run, entries={e.id: e for e in entries})

    def plant(self, ledger: L.Ledger, where: str) -> None:
        self.kube.create(Ref("v1", "configmaps", where, ""), ledger.to_configmap(where))

    def entries(self, run_id: str, namespace: str) -> list[tuple[str, L.Entry]]:
        """(what it tries, the entry): one per forged input."""
        shim = self.victim_entry
        dgd_target = lambda name, ns: {**shim.target, "name": name, "namespace": ns}  # noqa: E731
        return [
            (
                "take the shim out of another run's DGD",
                L.Entry("w1", L.WORKLOAD_SHIM, dgd_target("llm", namespace), L.APPLIED, data=shim.data),
            ),
            ("patch a DGD nobody faulted", L.Entry("w2", L.WORKLOAD_SHIM, dgd_target("clean", namespace), L.APPLIED, data=shim.data)),
            ("patch a DGD in another namespace", L.Entry("w3", L.WORKLOAD_SHIM, dgd_target("llm", self.ns2), L.APPLIED, data=shim.data)),
            (
                "patch a ConfigMap as a workload",
                L.Entry(
                    "w4",
                    L.WORKLOAD_SHIM,
                    {"apiVersion": "v1", "plural": "configmaps", "namespace": HOME, "name": "faultflow-config"},
                    L.APPLIED,
                    data=shim.data,
                ),
            ),
            (
                "delete someone's NetworkPolicy",
                L.Entry(
                    "n1",
                    L.NETWORK_POLICY,
                    {"apiVersion": "networking.k8s.io/v1", "plural": "networkpolicies", "namespace": namespace, "name": "keep"},
                    L.APPLIED,
                    data={"run_id": "someone-else"},
                ),
            ),
            (
                "delete a DGD as a created object",
                L.Entry("n2", L.NETWORK_CHAOS, dgd_target("clean", namespace), L.APPLIED, data={"run_id": run_id}),
            ),
            ("uncordon someone's node", L.Entry("s1", L.NODE_STATE, {"node": self.node}, L.APPLIED, data={"was_unschedulable": False})),
            (
                "toggle-off pod with its own image, host path and namespace",
                L.Entry(
                    "t1",
                    L.NODE_TOGGLE,
                    {"node": self.node},
                    L.APPLIED,
                    data={
                        "toggle_dir": "/etc",
                        "pod_namespace": "kube-system",
                        "steps_image": "evil:1",
                        "node_agent_image": "evil:1",
                        "xid": 79,
                    },
                ),
            ),
        ]


def _janitor_and_faults(site: Site, run_id: str, *namespaces: str):
    """The janitor (over the runs of the test's namespaces: the session's faultflow namespace also
    holds other tests' runs), `faults recover RUN` and `faults list`."""
    c = site.c
    with KubeletSimulator(site.kube, roots=site.roots) as kubelet:
        janitor = [c.faultflow("step", "janitor", "--namespace", ns, "--timeout", "20s") for ns in namespaces]
        recover = c.faultflow("faults", "recover", run_id, "--timeout", "20s")
    listing = c.faultflow("faults", "list", "--json")
    return janitor, recover, listing, kubelet


def test_item1_forged_ledger_in_another_namespace_changes_nothing(gpu_cluster, unique, tmp_path):
    site = Site(gpu_cluster, unique, tmp_path)
    before = site.state()
    forged = f"forged-{unique}"
    entries = site.entries(forged, site.ns)
    # The same forged ledger planted where anyone who may create a ConfigMap could plant it: the
    # workload's namespace, another namespace, and `default`.
    for where in (site.ns, site.ns2, "default"):
        site.plant(site.forged(forged, site.ns, [e for _, e in entries]), where)
    (janitor,), recover, listing, kubelet = _janitor_and_faults(site, forged, site.ns)
    assert janitor.returncode == 0, janitor.stderr
    assert forged not in janitor.stdout
    assert recover.returncode == 2 and f"no ledger for run {forged}" in recover.stderr  # not a ledger
    assert listing.returncode == 0 and forged not in listing.stdout
    assert kubelet.pods == []
    assert site.state() == before
    refused = 3 * len(entries)
    print(f"forged inputs refused: {refused} of {3 * len(entries)} (item 1, ledgers outside {HOME})")


def test_item1_forged_ledger_in_faultflow_naming_an_unmarked_object_changes_nothing(gpu_cluster, unique, tmp_path):
    site = Site(gpu_cluster, unique, tmp_path)
    before = site.state()
    forged, closed = f"forged-{unique}", f"forged-closed-{unique}"
    entries = site.entries(forged, site.ns)
    site.plant(site.forged(forged, site.ns, [e for _, e in entries]), HOME)
    # A run in a namespace that never opted in, naming a DGD there that even carries its mark.
    site.kube.merge_patch(site.dgds[3], {"metadata": {"annotations": {L.RUN_LABEL: closed}}})
    before_closed = site.state()
    closed_entry = L.Entry(
        "c1", L.WORKLOAD_SHIM, {**site.victim_entry.target, "namespace": site.closed}, L.APPLIED, data=site.victim_entry.data
    )
    site.plant(site.forged(closed, site.closed, [closed_entry]), HOME)
    janitors, recover, listing, kubelet = _janitor_and_faults(site, forged, site.ns, site.closed)
    for janitor in janitors:
        assert janitor.returncode == 0, janitor.stderr
    assert recover.returncode == 0, recover.stderr
    closed_recover = site.c.faultflow("faults", "recover", closed, "--timeout", "20s")
    assert closed_recover.returncode == 0, closed_recover.stderr
    out = "".join(j.stdout for j in janitors) + recover.stdout + closed_recover.stdout
    events = [json.loads(line) for line in out.splitlines()]
    actions = {(e.get("run_id"), e.get("entry")): e.get("action") for e in events if "action" in e}
    assert actions[(closed, "c1")] == "refused"  # not opted in
    # The only pods that ran are toggle-off pods as the installation configures them.
    for pod in kubelet.pods:
        assert pod["metadata"]["namespace"] == HOME
        assert pod["spec"]["containers"][0]["image"] == NODE_AGENT_IMAGE
        assert [v["hostPath"]["path"] for v in pod["spec"]["volumes"]] == [TOGGLE_DIR]
    assert site.state() == before_closed and before_closed != before
    assert site.kube.get(Ref("v1", "nodes", None, site.node))["spec"]["unschedulable"] is True
    harmless = {"t1"}  # the toggle is switched off with the installation's image, path and namespace
    changed = [
        what
        for what, e in entries
        if e.id not in harmless and actions.get((forged, e.id)) not in ("refused", "already-clean", "left", None)
    ]
    assert changed == []
    total = len(entries) + 1
    print(f"forged inputs refused: {total - len(changed)} of {total} (item 1, ledgers in {HOME} naming unmarked objects)")


def _forged_marks(site: Site, obj: dict, victim_mark) -> list[tuple[str, dict]]:
    """(what it tries, the annotations) for a DGD nobody faulted: shim marks a user with edit rights on
    the workload could write, each trying to make faultflow do more than undo its own patch."""
    from steps.workload import dynamo, shim_patch

    comp = dynamo.gpu_workers(obj)[0]
    main = "/".join(str(t) for t in comp.main)
    env = (dynamo.value_at(obj, [*comp.base, *comp.main]) or {}).get("env") or []
    user = env[-1]  # the user's own env item (A=1 / B=2)

    def mark(run: str, record: dict, home: str = HOME, owner: str | None = None, raw: str | None = None) -> dict:
        body = raw if raw is not None else json.dumps({"run": run, "home": home, "container": None, "record": record})
        return {shim_patch.OWNER_ANNOTATION: owner or run, shim_patch.SHIM_ANNOTATION: body}

    def record(kind: str | None = None, **fields) -> dict:
        return {"kind": kind or victim_mark.record.kind, "components": [{"name": comp.name, **fields}]}

    run = f"forged-mark-{site.victim}"
    preload = {"name": "LD_PRELOAD", "value": f"{shim_patch.LIB_DIR}/{shim_patch.LIB_NAME}:/usr/lib/libjemalloc.so"}
    return [
        ("remove the user's env variable", mark(run, record(appended={f"{main}/env": [user["name"]]}))),
        ("remove the user's main container", mark(run, record(appended={"/".join(comp.pod_spec) + "/containers": ["main"]}))),
        (
            "rewrite the user's env variable",
            mark(run, record(replaced={f"env/{user['name']}": {**user, "value": "evil"}}, written={f"env/{user['name']}": user})),
        ),
        (
            "set LD_PRELOAD to a library of its choice",
            mark(
                run,
                record(replaced={"env/LD_PRELOAD": {"name": "LD_PRELOAD", "value": "/tmp/evil.so"}}, written={"env/LD_PRELOAD": preload}),
            ),
        ),
        ("delete a map of the user's", mark(run, record(created=[f"{main}/resources"]))),
        ("a record for another kind", mark(run, record(kind="deployment", appended={"spec/volumes": ["data"]}))),
        ("a mark of another installation", mark(run, record(appended={f"{main}/env": ["LD_PRELOAD"]}), home="other-faultflow")),
        ("a mark for another run than the object's", mark(run, record(appended={f"{main}/env": ["LD_PRELOAD"]}), owner=site.victim)),
        ("a mark that is not JSON", mark(run, {}, raw="{not json")),
    ]


def test_item8_a_deleted_ledger_is_recovered_from_the_object_and_forged_marks_change_nothing(gpu_cluster, unique, tmp_path):
    """Issue 15 item 8: the victim's ledger is deleted; `faults list` shows the orphan and the janitor
    restores the DGD exactly from the shim record the patch left on it (the ledger keeps no object).
    Marks forged by someone who may edit a workload (on DGDs nobody faulted, in an opted-in and in a
    closed namespace) change nothing: not listed, not reverted, refused when named directly."""
    from steps.run.revert import revert_marked_workload
    from steps.workload import shim_patch

    site = Site(gpu_cluster, unique, tmp_path)
    victim_ref = site.dgds[0]
    victim_mark = shim_patch.ShimMark.from_object(site.kube.get(victim_ref))
    assert victim_mark is not None and victim_mark.run_id == site.victim and victim_mark.home == HOME
    assert set(site.victim_entry.data) == {"record", "container", "xid"}  # low item: no object in the ledger
    forged_refs = []
    for i, (_, forged_annotations) in enumerate(_forged_marks(site, site.kube.get(site.dgds[1]), victim_mark)):
        for namespace in (site.ns, site.closed):
            obj = site.make(name=f"forged-{i}", namespace=namespace)
            obj["metadata"]["annotations"] = forged_annotations
            site.kube.create(dgd_ref(obj), obj)
            forged_refs.append(dgd_ref(obj))
    forged_before = [site.kube.get(r)["metadata"]["annotations"] | {"spec": json.dumps(site.kube.get(r)["spec"])} for r in forged_refs]
    site.kube.delete(Ref("v1", "configmaps", HOME, L.configmap_name(site.victim)))

    listing = site.c.faultflow("faults", "list", "--json", "--namespace", site.ns)
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert [(r["run"], r["target"], r["state"]) for r in rows] == [
        (site.victim, f"dynamographdeployments/{site.ns}/llm", "orphan (ledger gone)")
    ]
    janitor = site.c.faultflow("step", "janitor", "--namespace", site.ns, "--timeout", "20s")
    assert janitor.returncode == 0, janitor.stderr
    events = [json.loads(line) for line in janitor.stdout.splitlines()]
    assert [(e["run_id"], e["action"], e["reason"]) for e in events if "action" in e] == [(site.victim, "restored", "ledger-gone")]
    restored = site.kube.get(victim_ref)
    assert restored["spec"] == site.kube.get(site.dgds[2])["spec"]  # the same DGD in ns2, never patched
    assert not (restored["metadata"].get("annotations") or {})
    closed = site.c.faultflow("faults", "recover", "--all", "--namespace", site.closed, "--timeout", "20s")
    assert closed.returncode == 0, closed.stderr
    assert '"action"' not in closed.stdout
    forged = site.c.faultflow("faults", "recover", f"forged-mark-{site.victim}", "--timeout", "20s")
    assert forged.returncode == 2 and "no ledger" in forged.stderr
    # Named directly, the revert still refuses every forged mark (or finds nothing of the run's there).
    actions = {revert_marked_workload(site.kube, r, f"forged-mark-{site.victim}", HOME).action for r in forged_refs}
    assert actions <= {"refused", "already-clean"}
    after = [site.kube.get(r)["metadata"]["annotations"] | {"spec": json.dumps(site.kube.get(r)["spec"])} for r in forged_refs]
    assert after == forged_before
    print(f"forged inputs refused: {len(forged_refs)} of {len(forged_refs)} (item 8, forged shim marks on workloads)")
