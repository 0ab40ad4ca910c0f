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
    STEPS_IMAGE,
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
                    data={"toggle_dir": "/etc", "pod_namespace": "kube-system", "steps_image": "evil:1", "xid": 79},
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
        assert pod["spec"]["containers"][0]["image"] == STEPS_IMAGE
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
