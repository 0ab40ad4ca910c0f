"""Undoing ledger entries — the one implementation cleanup, restore-node, the janitor and
`faults recover` all use, so "what the janitor would do" is literally the same code.

A ledger says what to undo, never how far to reach: an entry is acted on only when
* the run's namespace has opted in (`faultflow.dev/allow-faults=true`), the entry's object is in that
  namespace and of a kind the entry kind allows (a workload: DGD/Deployment/StatefulSet; a created
  object: its NetworkPolicy/NetworkChaos/Pod);
* the live object carries this run's mark (`faultflow.dev/run=<id>`: the annotation our patch set,
  the label our created object carries) — otherwise nothing of ours is there (`already-clean` for
  a workload, `left` for a created object); anything outside those bounds is `refused`;
* the toggle-off pod's image, host path and namespace come from the installation (`NodeConfig`),
  never from the ledger; only the node name does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from steps.errors import BadInput, InfrastructureError
from steps.event_names import EventName
from steps.gpu.toggle_pod import run_to_completion, toggle_off_pod
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref
from steps.run import install
from steps.run import ledger as L
from steps.run.guardrails import OPT_IN_LABEL
from steps.workload import shim_patch
from steps.workload.kinds import patch_with_retry


@dataclass
class Outcome:
    entry_id: str
    kind: str
    action: str  # restored | already-clean | toggle-off | expired | uncordoned | left | deleted | refused


@dataclass(frozen=True)
class NodeConfig:
    """Where and how a toggle-off pod runs: installation configuration only."""

    namespace: str  # faultflow's namespace
    image: str  # the installed node-agent image (images/node-agent)
    toggle_dir: str  # the installed node toggle directory

    @classmethod
    def installed(cls, kube: Kube, home: str, image: str | None = None, toggle_dir: str | None = None) -> NodeConfig:
        """From ConfigMap faultflow-config (image and toggle_dir: the operator's own overrides)."""
        if image and toggle_dir:
            return cls(home, image, toggle_dir)
        config = install.load(kube, home)
        return cls(home, image or config.node_agent_image, toggle_dir or config.toggle_dir)


# (API group, plural) each entry kind may name: a ledger cannot point a revert at anything else.
WORKLOAD_KINDS = {("nvidia.com", "dynamographdeployments"), ("apps", "deployments"), ("apps", "statefulsets")}
CREATED_KINDS = {
    L.NETWORK_POLICY: ("networking.k8s.io", "networkpolicies"),
    L.NETWORK_CHAOS: ("chaos-mesh.org", "networkchaos"),
    L.NETWORK_PROBE: ("", "pods"),
}


def opted_in(kube: Kube, namespace: str) -> bool:
    ns = kube.get_or_none(Ref("v1", "namespaces", None, namespace))
    return ns is not None and o.labels(ns).get(OPT_IN_LABEL) == "true"


def entry_ref(entry: L.Entry, run: L.RunInfo, allowed: set[tuple[str, str]]) -> Ref | None:
    """The entry's object, or None when the ledger names something outside the run's reach."""
    if not isinstance(entry.target, dict):
        return None
    try:
        ref = Ref.from_dict(entry.target)
    except (KeyError, TypeError, AttributeError):
        return None
    if not all(isinstance(v, str) for v in (ref.api_version, ref.plural, ref.namespace, ref.name)):
        return None
    if ref.namespace != run.namespace or (ref.group_version[0], ref.plural) not in allowed or not ref.name:
        return None
    return ref


def event_name(outcome: Outcome) -> EventName:
    """The timeline event a revert stands for: the workload back to its snapshot, or a fault gone."""
    if outcome.action == "refused":
        return EventName.REVERT_REFUSED
    if outcome.kind in (L.WORKLOAD_SHIM, L.NVML_CONSUMER):
        return EventName.DGD_RESTORED
    if outcome.kind == L.NODE_STATE:
        return EventName.NODE_RESTORED
    return EventName.FAULT_CLEARED


class _Foreign(Exception):
    """The record names something our patch never adds: the revert is refused whole."""


def _take_out(obj: dict, record: shim_patch.ShimRecord, container: str | None) -> dict:
    try:
        foreign = shim_patch.foreign_items(obj, record, container)
    except BadInput:  # a shape our patch never wrote into
        raise _Foreign from None
    if foreign:
        raise _Foreign
    return shim_patch.with_owner(shim_patch.remove_shim(obj, record, container), None)


def _patched(kube: Kube, ref: Ref, entry_id: str, compute: Callable[[dict], dict]) -> Outcome:
    try:
        _, after = patch_with_retry(kube, ref, compute)
    except NotFound:
        return Outcome(entry_id, L.WORKLOAD_SHIM, "already-clean")  # the workload is gone: nothing of ours is left
    except _Foreign:
        return Outcome(entry_id, L.WORKLOAD_SHIM, "refused")
    return Outcome(entry_id, L.WORKLOAD_SHIM, "restored" if after is not None else "already-clean")


def revert_workload(kube: Kube, run_id: str, entry: L.Entry, namespace: str) -> Outcome:
    """Takes the shim out of a workload that carries this run's annotation (set in the same patch as
    the shim, so without it nothing of ours is there)."""
    ref = entry_ref(entry, L.RunInfo(run_id, namespace, 0, 0), WORKLOAD_KINDS)
    if ref is None:
        return Outcome(entry.id, entry.kind, "refused")
    record = shim_patch.ShimRecord.from_dict(entry.data["record"])
    container = entry.data.get("container")

    def compute(obj: dict) -> dict:
        if shim_patch.owner(obj) != run_id:
            return obj  # not ours (never patched, already restored, or another run's): unchanged
        return _take_out(obj, record, container)

    return _patched(kube, ref, entry.id, compute)


def marked_entry_id(ref: Ref) -> str:
    """The entry id inject-cuda-shim gave the workload (steps.workload.shim_inject.entry_id)."""
    return f"shim-{ref.plural}-{ref.name}"


def revert_marked_workload(kube: Kube, ref: Ref, run_id: str, home: str) -> Outcome:
    """Issue 15 item 8: the run's ledger is gone; the object's own shim mark says what to take out.
    Whoever may edit the workload may also write that mark, so it is trusted for nothing more than
    undoing our patch on this same object: the namespace must opt in, the object must be a workload
    of ours to patch, the mark must name this run and this installation, and the record may name
    only what `apply_shim` adds (else `refused`, nothing changed)."""
    entry_id = marked_entry_id(ref)
    if (ref.group_version[0], ref.plural) not in WORKLOAD_KINDS or not ref.namespace or not opted_in(kube, ref.namespace):
        return Outcome(entry_id, L.WORKLOAD_SHIM, "refused")

    def compute(obj: dict) -> dict:
        try:
            mark = shim_patch.ShimMark.from_object(obj)
        except BadInput:
            raise _Foreign from None
        if mark is None or shim_patch.owner(obj) != run_id or mark.run_id != run_id or mark.home != home:
            return obj  # restored meanwhile, or not this run's
        return _take_out(obj, mark.record, mark.container)

    return _patched(kube, ref, entry_id, compute)


def revert_toggle(kube: Kube, run_id: str, entry: L.Entry, timeout_s: float, config: NodeConfig) -> Outcome:
    node = entry.target.get("node") if isinstance(entry.target, dict) else None
    if not isinstance(node, str) or not node:
        return Outcome(entry.id, entry.kind, "refused")
    if kube.get_or_none(Ref("v1", "nodes", None, node)) is None:
        return Outcome(entry.id, entry.kind, "already-clean")  # the node is gone, and its file with it
    pod = toggle_off_pod(run_id, config.namespace, node, config.toggle_dir, config.image)
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
    attempts = 8
    for _ in range(attempts):
        try:
            kube.guarded_patch(
                ref,
                [
                    {"op": "test", "path": "/metadata/resourceVersion", "value": node["metadata"]["resourceVersion"]},
                    {"op": "replace", "path": "/spec/unschedulable", "value": False},
                ],
            )
            return Outcome(entry.id, entry.kind, "uncordoned")
        except Conflict:
            node = kube.get(ref)  # NVSentinel or the kubelet wrote meanwhile: try again on the fresh node
            if not o.unschedulable(node):
                return Outcome(entry.id, entry.kind, "already-clean")
    # Say what really happened: the node is still cordoned (the entry stays active for a retry).
    raise InfrastructureError(f"node {ref.name} kept changing under us ({attempts} attempts): it is still cordoned")


def revert_created_object(kube: Kube, run: L.RunInfo, entry: L.Entry) -> Outcome:
    """NetworkPolicy / NetworkChaos / probe Pod: the run created the object, so reverting deletes it (only if it
    still carries this run's label, so a same-named object of someone else is never deleted)."""
    ref = entry_ref(entry, run, {CREATED_KINDS[entry.kind]})
    if ref is None:
        return Outcome(entry.id, entry.kind, "refused")
    obj = kube.get_or_none(ref)
    if obj is None:
        return Outcome(entry.id, entry.kind, "already-clean")
    if o.labels(obj).get(L.RUN_LABEL) != run.run_id:
        return Outcome(entry.id, entry.kind, "left")
    kube.delete(ref)
    return Outcome(entry.id, entry.kind, "deleted")


def revert_entry(
    kube: Kube, run: L.RunInfo, entry: L.Entry, timeout_s: float, node_config: NodeConfig | None = None, include_node: bool = False
) -> Outcome | None:
    if entry.kind == L.WORKLOAD_SHIM:
        return revert_workload(kube, run.run_id, entry, run.namespace)
    if entry.kind == L.NVML_CONSUMER:
        # Outside the run's namespace by design: the DaemonSet's own opt-in label bounds it (nvml_consumers).
        from steps.workload import nvml_consumers

        return Outcome(entry.id, entry.kind, nvml_consumers.revert(kube, run.run_id, entry))
    if entry.kind == L.NODE_TOGGLE:
        if entry.state == L.PENDING and entry.data.get("expires_ms") and entry.data["expires_ms"] <= time.time() * 1000:
            return Outcome(entry.id, entry.kind, "expired")  # the shim already reads it as off
        if node_config is None:
            raise InfrastructureError(f"ledger entry {entry.id}: no installation configuration for the toggle-off pod")
        return revert_toggle(kube, run.run_id, entry, timeout_s, node_config)
    if entry.kind == L.NODE_STATE:
        return revert_node(kube, entry) if include_node else None
    if entry.kind in L.CREATED_OBJECT_KINDS:
        return revert_created_object(kube, run, entry)
    raise InfrastructureError(f"ledger entry {entry.id} has unknown kind {entry.kind}")


ORDER = {
    L.WORKLOAD_SHIM: 0,
    L.NVML_CONSUMER: 0,
    L.NETWORK_POLICY: 1,
    L.NETWORK_CHAOS: 1,
    L.NETWORK_PROBE: 1,
    L.NODE_TOGGLE: 2,
    L.NODE_STATE: 3,
}


def in_order(entries: list[L.Entry]) -> list[L.Entry]:
    """Workloads first, then created objects, then the node toggle, then the node's state."""
    return sorted(entries, key=lambda e: (ORDER.get(e.kind, 9), e.created_ms if isinstance(e.created_ms, (int, float)) else 0))


def revert_run(
    kube: Kube,
    store: L.LedgerStore,
    ledger: L.Ledger,
    timeout_s: float,
    kinds: tuple[str, ...] = L.KINDS,
    node_config: NodeConfig | None = None,
    include_node: bool | None = None,
    entry_ids: frozenset[str] | None = None,
) -> list[Outcome]:
    """Reverts every active entry of the given kinds (workloads first, then nodes) and marks them
    reverted; with `entry_ids`, only those entries (a step undoing its own partial change, the janitor
    an expired entry). A run whose namespace has not opted in is refused as a whole (each entry
    `refused`, left active in the ledger): nothing there was ever ours to change."""
    run = ledger.run
    include_node = run.restore_node if include_node is None else include_node
    chosen = [e for e in in_order(ledger.active()) if e.kind in kinds and (entry_ids is None or e.id in entry_ids)]
    if chosen and not opted_in(kube, run.namespace):
        return [Outcome(e.id, e.kind, "refused") for e in chosen]
    outcomes = []
    for entry in chosen:
        outcome = revert_entry(kube, run, entry, timeout_s, node_config, include_node)
        if outcome is None:
            continue
        if outcome.action != "refused":
            store.set_state(run.namespace, run.run_id, entry.id, L.REVERTED)
        outcomes.append(outcome)
    return outcomes
