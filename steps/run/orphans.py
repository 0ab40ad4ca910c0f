"""Runs whose ledger is gone but whose shim is still in a workload (issue 15 item 8).

The ledger is the record of a run, but a person (or a cleanup of faultflow's namespace) can delete
it while the DGD still loads the shim. The patch therefore also leaves its record on the object
(`steps.workload.shim_patch.ShimMark`), and this module finds those objects: in opted-in namespaces
only, of the workload kinds we patch only, carrying `faultflow.dev/run=<id>` and a mark naming this
installation, for a run that has no ledger here. Reverting one is `steps.run.revert.revert_marked_workload`,
bounded to undoing our patch on that object whatever the mark says.
"""

from __future__ import annotations

from dataclasses import dataclass

from steps.errors import BadInput, StepError
from steps.kube import objects as o
from steps.kube.client import Kube, NotFound, Ref
from steps.run import ledger as L
from steps.run.guardrails import OPT_IN_LABEL
from steps.run.revert import opted_in
from steps.workload import dynamo, shim_patch

APPS = (("apps/v1", "deployments"), ("apps/v1", "statefulsets"))


@dataclass(frozen=True)
class Orphan:
    run_id: str
    ref: Ref


def _namespaces(kube: Kube, namespace: str | None) -> list[str]:
    if namespace is not None:
        return [namespace] if opted_in(kube, namespace) else []
    listing = kube.list(Ref("v1", "namespaces", None, ""), label_selector=f"{OPT_IN_LABEL}=true")
    return sorted(name for ns in listing.get("items") or [] if (name := o.name(ns)))


def _workloads(kube: Kube, namespace: str) -> list[tuple[Ref, dict]]:
    """Every DGD (the newest served version: upstream serves both, converted), Deployment and
    StatefulSet in `namespace` that we may list; a kind that is not served or not ours to list is skipped."""
    found: list[tuple[Ref, dict]] = []
    kinds = [(f"{dynamo.DGD_GROUP}/{v}", dynamo.DGD_PLURAL) for v in reversed(dynamo.DGD_VERSIONS)] + list(APPS)
    listed_dgd = False
    for api_version, plural in kinds:
        if plural == dynamo.DGD_PLURAL and listed_dgd:
            continue
        try:
            listing = kube.list(Ref(api_version, plural, namespace, ""))
        except (NotFound, StepError):
            continue
        listed_dgd = listed_dgd or plural == dynamo.DGD_PLURAL
        kind = str(listing.get("kind") or "").removesuffix("List")
        for obj in listing.get("items") or []:
            name = o.name(obj)
            if not name:
                continue
            # The API server leaves apiVersion/kind out of a built-in list's items.
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind)
            found.append((Ref(api_version, plural, namespace, name), obj))
    return found


def find(kube: Kube, home: str, namespace: str | None = None, run_id: str | None = None) -> list[Orphan]:
    """Workloads carrying a run's shim mark (of this installation) whose run has no ledger in `home`."""
    with_ledger = {ledger.run.run_id for ledger in L.LedgerStore(kube, home).all()}
    out = []
    for ns in _namespaces(kube, namespace):
        for ref, obj in _workloads(kube, ns):
            owner = shim_patch.owner(obj)
            if owner is None or owner in with_ledger or (run_id is not None and owner != run_id):
                continue
            try:
                mark = shim_patch.ShimMark.from_object(obj)
            except BadInput:
                mark = None  # not a record we wrote: nothing we can undo exactly (a person's job)
            # A mark naming anything our patch never adds was not written by us: not an orphan of ours.
            if mark is None or mark.run_id != owner or mark.home != home:
                continue
            try:
                foreign = shim_patch.foreign_items(obj, mark.record, mark.container)
            except BadInput:
                continue
            if not foreign:
                out.append(Orphan(owner, ref))
    return out
