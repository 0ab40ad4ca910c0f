"""Objects a network step creates (NetworkPolicy, NetworkChaos, probe Pod): their run labels, and the
one way they are created — server-side validated first, recorded in the ledger before, then created.

Every object carries `faultflow.dev/run=<id>` as a label (the revert deletes an object only while it
still carries that label: `steps.run.revert.revert_created_object`) and as an annotation (as every changed
object does), plus `faultflow.dev/fault` so a person can find them all with one `kubectl get -l`.
Names contain the run id, so two runs never collide.
"""

from __future__ import annotations

import json

from steps.errors import BadInput, CheckFailed
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, Ref, Unprocessable
from steps.run import ledger as L

POLICY_API = "networking.k8s.io/v1"
CHAOS_API = "chaos-mesh.org/v1alpha1"
FAULT_LABEL = "faultflow.dev/fault"
MANAGED_BY = ("app.kubernetes.io/managed-by", "faultflow")

# kind → (plural, ledger entry kind, entry id prefix)
KINDS = {
    "NetworkPolicy": ("networkpolicies", L.NETWORK_POLICY, "netpol"),
    "NetworkChaos": ("networkchaos", L.NETWORK_CHAOS, "chaos"),
    "Pod": ("pods", L.NETWORK_PROBE, "probe"),
}


def metadata(name: str, namespace: str, run_id: str, fault: str, annotations: dict | None = None) -> dict:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {L.RUN_LABEL: run_id, FAULT_LABEL: fault, MANAGED_BY[0]: MANAGED_BY[1]},
        "annotations": {L.RUN_LABEL: run_id, **(annotations or {})},
    }


def ref_of(obj: dict) -> Ref:
    return Ref(obj["apiVersion"], KINDS[obj["kind"]][0], obj["metadata"]["namespace"], obj["metadata"]["name"])


def entry_of(obj: dict, run_id: str, expires_ms: int | None, data: dict | None = None) -> L.Entry:
    _, kind, prefix = KINDS[obj["kind"]]
    fields = {"run_id": run_id, "spec": obj["spec"], **(data or {})}
    if expires_ms is not None:
        fields["expires_ms"] = expires_ms  # the janitor reverts this entry after it, even in a live run
    return L.Entry(id=f"{prefix}-{obj['metadata']['name']}", kind=kind, target=ref_of(obj).to_dict(), data=fields)


def create(kube: Kube, obj: dict, dry_run: bool = False) -> dict:
    """POST with strict field validation: a field the schema does not know is an error, not silently
    pruned (pruning is how the reference's malformed Chaos Mesh target became "everything")."""
    ref = ref_of(obj)
    collection = Ref(ref.api_version, ref.plural, ref.namespace, "").path()
    return kube.request("POST", collection, body=obj, query={"fieldValidation": "Strict", "dryRun": "All" if dry_run else None})


def same_spec(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def existing(kube: Kube, objs: list[dict], run_id: str) -> set[str]:
    """Names of the objects already in place for this run (a retried step); CheckFailed for a name
    held by someone else, BadInput when this run already created it with a different spec."""
    present = set()
    for obj in objs:
        live = kube.get_or_none(ref_of(obj))
        if live is None:
            continue
        owner = o.labels(live).get(L.RUN_LABEL)
        if owner != run_id:
            raise CheckFailed(f"{ref_of(obj)} exists and is not this run's (run label {owner!r})")
        if not same_spec(live.get("spec") or {}, obj["spec"]):
            raise BadInput(f"run {run_id} already has {ref_of(obj)} with other settings: heal-network first, or use a new run id")
        present.add(obj["metadata"]["name"])
    return present


def validate_on_server(kube: Kube, objs: list[dict], skip: set[str]) -> None:
    """Server-side dry run of every create (the real schema, the CRD's included) before anything is
    recorded or changed, so a rejected object is bad input with nothing changed."""
    for obj in objs:
        if obj["metadata"]["name"] in skip:
            continue
        try:
            create(kube, obj, dry_run=True)
        except Unprocessable as error:
            raise BadInput(f"the API server rejects {obj['kind']} {obj['metadata']['name']}: {error}") from None


def create_recorded(
    kube: Kube,
    store: L.LedgerStore,
    run: L.RunInfo,
    objs: list[dict],
    expires_ms: int | None,
    data: dict | None = None,
    created: list[str] | None = None,
) -> list[str]:
    """For each object: ledger entry first, then the create, then the entry marked applied. Objects
    already in place are left as they are. Returns the ledger entry ids of the objects (each appended
    to `created` as soon as it is recorded, so a SIGTERM handler knows what to undo)."""
    ids = []
    for obj in objs:
        entry = entry_of(obj, run.run_id, expires_ms, data)
        store.record(run.namespace, run.run_id, entry)
        ids.append(entry.id)
        if created is not None:
            created.append(entry.id)
        try:
            create(kube, obj)
        except Conflict:
            existing(kube, [obj], run.run_id)  # ours and identical (a concurrent retry), or an error
        store.set_state(run.namespace, run.run_id, entry.id, L.APPLIED)
    return ids


def undo(kube: Kube, store: L.LedgerStore, run: L.RunInfo, entry_ids: list[str]) -> int:
    """Reverts exactly these entries of the run (a step's own partial change), through the one revert path."""
    from steps.run.revert import revert_run

    ledger = store.load(run.namespace, run.run_id)
    if ledger is None or not entry_ids:
        return 0
    return len(revert_run(kube, store, ledger, 60, kinds=L.CREATED_OBJECT_KINDS, entry_ids=frozenset(entry_ids)))
