"""Undoing ledger entries — the one implementation cleanup, restore-node, the janitor and
`faults recover` all use, so "what the janitor would do" is literally the same code."""

from __future__ import annotations

import time
from dataclasses import dataclass

from steps.errors import InfrastructureError
from steps.event_names import EventName
from steps.gpu.toggle_pod import run_to_completion, toggle_off_pod
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref
from steps.run import ledger as L
from steps.workload import shim_patch
from steps.workload.kinds import patch_with_retry


@dataclass
class Outcome:
    entry_id: str
    kind: str
    action: str  # restored | already-clean | toggle-off | expired | uncordoned | left | deleted


def event_name(outcome: Outcome) -> EventName:
    """The timeline event a revert stands for: the workload back to its snapshot, or a fault gone."""
    if outcome.kind == L.WORKLOAD_SHIM:
        return EventName.DGD_RESTORED
    if outcome.kind == L.NODE_STATE:
        return EventName.NODE_RESTORED
    return EventName.FAULT_CLEARED


def revert_workload(kube: Kube, run_id: str, entry: L.Entry) -> Outcome:
    ref = Ref.from_dict(entry.target)
    record = shim_patch.ShimRecord.from_dict(entry.data["record"])
    container = entry.data.get("container")

    def compute(obj: dict) -> dict:
        restored = shim_patch.remove_shim(obj, record, container)
        return shim_patch.with_owner(restored, None) if shim_patch.owner(obj) == run_id else restored

    try:
        _, after = patch_with_retry(kube, ref, compute)
    except NotFound:
        return Outcome(entry.id, entry.kind, "already-clean")  # the workload is gone: nothing of ours is left
    return Outcome(entry.id, entry.kind, "restored" if after is not None else "already-clean")


def revert_toggle(kube: Kube, run_id: str, entry: L.Entry, timeout_s: float, image: str | None = None) -> Outcome:
    node = entry.target["node"]
    if kube.get_or_none(Ref("v1", "nodes", None, node)) is None:
        return Outcome(entry.id, entry.kind, "already-clean")  # the node is gone, and its file with it
    pod = toggle_off_pod(run_id, entry.data["pod_namespace"], node, entry.data["toggle_dir"], image or entry.data["steps_image"])
    run_to_completion(kube, pod, timeout_s)
    return Outcome(entry.id, entry.kind, "toggle-off")


def revert_node(kube: Kube, entry: L.Entry) -> Outcome:
    """Uncordon only a node this run found schedulable; a node cordoned before the run stays cordoned."""
    ref = Ref("v1", "nodes", None, entry.target["node"])
    if entry.data.get("was_unschedulable"):
        return Outcome(entry.id, entry.kind, "left")
    try:
        node = kube.get(ref)
    except NotFound:
        return Outcome(entry.id, entry.kind, "already-clean")
    if not o.unschedulable(node):
        return Outcome(entry.id, entry.kind, "already-clean")
    for _ in range(8):
        try:
            kube.guarded_patch(ref, [
                {"op": "test", "path": "/metadata/resourceVersion", "value": node["metadata"]["resourceVersion"]},
                {"op": "replace", "path": "/spec/unschedulable", "value": False},
            ])
            break
        except Conflict:
            node = kube.get(ref)  # NVSentinel or the kubelet wrote meanwhile: try again on the fresh node
            if not o.unschedulable(node):
                return Outcome(entry.id, entry.kind, "already-clean")
    return Outcome(entry.id, entry.kind, "uncordoned")


def revert_created_object(kube: Kube, entry: L.Entry) -> Outcome:
    """NetworkPolicy / NetworkChaos / probe Pod: the run created the object, so reverting deletes it (only if it
    still carries this run's label, so a same-named object of someone else is never deleted)."""
    ref = Ref.from_dict(entry.target)
    obj = kube.get_or_none(ref)
    if obj is None:
        return Outcome(entry.id, entry.kind, "already-clean")
    if o.labels(obj).get(L.RUN_LABEL) != entry.data.get("run_id"):
        return Outcome(entry.id, entry.kind, "left")
    kube.delete(ref)
    return Outcome(entry.id, entry.kind, "deleted")


def revert_entry(kube: Kube, run_id: str, entry: L.Entry, timeout_s: float, steps_image: str | None = None,
                 include_node: bool = False) -> Outcome | None:
    if entry.kind == L.WORKLOAD_SHIM:
        return revert_workload(kube, run_id, entry)
    if entry.kind == L.NODE_TOGGLE:
        if entry.state == L.PENDING and entry.data.get("expires_ms") and entry.data["expires_ms"] <= time.time() * 1000:
            return Outcome(entry.id, entry.kind, "expired")  # the shim already reads it as off
        return revert_toggle(kube, run_id, entry, timeout_s, steps_image)
    if entry.kind == L.NODE_STATE:
        return revert_node(kube, entry) if include_node else None
    if entry.kind in L.CREATED_OBJECT_KINDS:
        return revert_created_object(kube, entry)
    raise InfrastructureError(f"ledger entry {entry.id} has unknown kind {entry.kind}")


def revert_run(kube: Kube, store: L.LedgerStore, ledger: L.Ledger, timeout_s: float, kinds: tuple[str, ...] = L.KINDS,
               steps_image: str | None = None, include_node: bool | None = None,
               entry_ids: frozenset[str] | None = None) -> list[Outcome]:
    """Reverts every active entry of the given kinds (workloads first, then nodes) and marks them
    reverted; with `entry_ids`, only those entries (a step undoing its own partial change, the janitor
    an expired entry)."""
    run = ledger.run
    include_node = run.restore_node if include_node is None else include_node
    order = {L.WORKLOAD_SHIM: 0, L.NETWORK_POLICY: 1, L.NETWORK_CHAOS: 1, L.NETWORK_PROBE: 1, L.NODE_TOGGLE: 2, L.NODE_STATE: 3}
    outcomes = []
    for entry in sorted(ledger.active(), key=lambda e: (order.get(e.kind, 9), e.created_ms)):
        if entry.kind not in kinds or (entry_ids is not None and entry.id not in entry_ids):
            continue
        outcome = revert_entry(kube, run.run_id, entry, timeout_s, steps_image, include_node)
        if outcome is None:
            continue
        store.set_state(run.namespace, run.run_id, entry.id, L.REVERTED)
        outcomes.append(outcome)
    return outcomes
