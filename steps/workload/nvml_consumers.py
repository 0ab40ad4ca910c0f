"""Preloading the NVML interposer (libfaultflow_nvml.so) into the node's NVML consumers — the NVIDIA
device plugin, DCGM, the DRA driver, named DaemonSets — and taking exactly that away again.

Same rules as the workers' CUDA shim (`steps.workload.shim_inject`): the ledger entry (the record of what
is added, never the object itself) is written BEFORE the one resourceVersion-guarded JSON patch;
the patch sets the run's annotation `faultflow.dev/run=<id>` on the DaemonSet, and a revert acts only
on a DaemonSet that still carries it; `remove_shim(apply(x)) == x`, byte for byte.

What is added to the pod template: the shim image's init container and its two volumes (the
libraries in an emptyDir, the node's toggle directory), and to EVERY container the mounts, `LD_PRELOAD`
(chained before a preload the container already has) and `FAULTFLOW_TOGGLE_FILE`: the DRA driver's
kubelet plugin runs NVML in its second container, so "the first container" would miss it.

Opt-in: a consumer DaemonSet normally lives in kube-system or gpu-operator, next to every other system
DaemonSet, so opting the whole namespace in (`faultflow.dev/allow-faults=true` on the namespace, as for
workloads) would open all of them. The DaemonSet itself must carry the label
`faultflow.dev/allow-faults=true` (set by whoever administers it); its namespace label is neither
needed nor sufficient. Without the label it is refused before anything is written, and a revert
(cleanup, janitor, `faults recover`) of a DaemonSet that lost it is `refused`, left for a person.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from steps.errors import BadInput, CheckFailed, InfrastructureError
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref, backoff
from steps.run import ledger as L
from steps.run.guardrails import OPT_IN_LABEL
from steps.workload import shim_patch as S
from steps.workload.dynamo import Component, value_at

API_VERSION, PLURAL = "apps/v1", "daemonsets"
KIND = "daemonset"
NVML_LIB_NAME = "libfaultflow_nvml.so"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class ConsumerRef:
    namespace: str
    name: str

    @property
    def ref(self) -> Ref:
        return Ref(API_VERSION, PLURAL, self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_consumers(text: str) -> list[ConsumerRef]:
    """`ns/name[,ns/name…]` (empty: none); BadInput for anything else."""
    found: list[ConsumerRef] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        namespace, sep, name = item.partition("/")
        if not sep or not _NAMESPACE.match(namespace) or not _NAME.match(name):
            raise BadInput(f"--nvml-consumers: {item!r} is not namespace/name of a DaemonSet")
        if ConsumerRef(namespace, name) not in found:
            found.append(ConsumerRef(namespace, name))
    return found


def entry_id(consumer: ConsumerRef) -> str:
    return f"nvml-daemonsets-{consumer.namespace}-{consumer.name}"


def containers(obj: dict) -> list[Component]:
    """One component per container of the pod template (all of them read NVML, or may)."""
    found = value_at(obj, ("spec", "template", "spec", "containers")) or []
    if not found:
        raise BadInput(f"DaemonSet {o.meta(obj).get('namespace')}/{o.name(obj)} has no containers")
    return [
        Component(name=str(c.get("name", "")), type=KIND, base=["spec", "template"], pod_spec=("spec",), main=("spec", "containers", i))
        for i, c in enumerate(found)
    ]


def consumer_env(cfg: S.ShimConfig) -> list[dict]:
    # No CUDA_FAULT_INJECTION_ENABLED: off unless set, and the toggle alone turns the fault on.
    return [{"name": "LD_PRELOAD", "value": f"{S.LIB_DIR}/{NVML_LIB_NAME}"}, {"name": "FAULTFLOW_TOGGLE_FILE", "value": cfg.toggle_file}]


def is_injected(obj: dict) -> bool:
    inits = value_at(obj, ("spec", "template", "spec", "initContainers")) or []
    return any(c.get("name") == S.INIT_NAME for c in inits)


def apply(obj: dict, cfg: S.ShimConfig) -> tuple[dict, S.ShimRecord]:
    """The DaemonSet with the interposer added (nothing when it already is), and what was added."""
    new = copy.deepcopy(obj)
    record = S.ShimRecord(kind=KIND, components=[])
    if is_injected(obj):
        return new, record
    body = value_at(new, ["spec", "template"])
    for index, comp in enumerate(containers(obj)):
        rec = S.ComponentRecord(name=comp.name)
        if index == 0:  # the pod-level parts once, recorded with the first container
            S._append_named(body, (*comp.pod_spec, "volumes"), S.volumes(cfg), rec)
            S._append_named(body, (*comp.pod_spec, "initContainers"), [S.init_container(cfg)], rec)
        S._append_named(body, (*comp.main, "volumeMounts"), S.worker_mounts(cfg), rec)
        S._set_env(body, (*comp.main, "env"), consumer_env(cfg), rec)
        record.components.append(rec)
    return new, record


def remove(obj: dict, record: S.ShimRecord) -> dict:
    return S.remove_shim(obj, record, found=containers(obj) if value_at(obj, ("spec", "template", "spec", "containers")) else [])


def check_opted_in(obj: dict, consumer: ConsumerRef) -> None:
    if o.labels(obj).get(OPT_IN_LABEL) != "true":
        raise BadInput(
            f"DaemonSet {consumer} has not opted in to fault injection (label {OPT_IN_LABEL}=true on the DaemonSet itself; "
            "its namespace's label does not open system DaemonSets)"
        )


def inject(kube: Kube, store: L.LedgerStore, run: L.RunInfo, consumer: ConsumerRef, cfg: S.ShimConfig) -> bool:
    """Records, then patches. True when patched now (False: it already carries the interposer)."""
    for attempt in range(20):
        if attempt:
            backoff(attempt)
        obj = kube.get_or_none(consumer.ref)
        if obj is None:
            raise BadInput(f"DaemonSet {consumer} not found")
        check_opted_in(obj, consumer)
        holder = S.owner(obj)
        if holder not in (None, run.run_id):
            raise CheckFailed(
                f"DaemonSet {consumer} already carries a fault of run {holder}; recover it first (faultflow faults recover {holder})"
            )
        new, record = apply(obj, cfg)
        if not record.components:
            return False
        entry = L.Entry(
            id=entry_id(consumer),
            kind=L.NVML_CONSUMER,
            target=consumer.ref.to_dict(),
            # What is added, never the object (its env values may be secrets; issue 15's Low item):
            # `remove_shim` takes exactly the record back out. An object that already carries the
            # interposer returned above, so this record is never computed from our own patch.
            data={"record": record.to_dict()},
        )
        store.record(run.namespace, run.run_id, entry)  # BEFORE the change
        ops = S.patch_ops(obj, S.with_owner(new, run.run_id))
        try:
            kube.guarded_patch(consumer.ref, ops)
        except Conflict:
            continue  # the DaemonSet changed meanwhile: re-read, recompute; their change survives
        store.set_state(run.namespace, run.run_id, entry.id, L.APPLIED)
        return True
    raise InfrastructureError(f"DaemonSet {consumer} kept changing under us")


def entry_consumer(entry: L.Entry) -> ConsumerRef | None:
    """The entry's DaemonSet, or None when the ledger names anything else."""
    target = entry.target if isinstance(entry.target, dict) else {}
    namespace, name = target.get("namespace"), target.get("name")
    if target.get("apiVersion") != API_VERSION or target.get("plural") != PLURAL:
        return None
    if not isinstance(namespace, str) or not isinstance(name, str) or not _NAMESPACE.match(namespace) or not _NAME.match(name):
        return None
    return ConsumerRef(namespace, name)


def revert(kube: Kube, run_id: str, entry: L.Entry) -> str:
    """Takes the interposer out of a DaemonSet that carries this run's annotation and still opts in.
    Returns the action: restored | already-clean | refused."""
    consumer = entry_consumer(entry)
    if consumer is None:
        return "refused"
    try:
        record = S.ShimRecord.from_dict(entry.data["record"])
    except (KeyError, TypeError):
        return "refused"
    for attempt in range(20):
        if attempt:
            backoff(attempt)
        try:
            obj = kube.get(consumer.ref)
        except NotFound:
            return "already-clean"  # the DaemonSet is gone: nothing of ours is left
        if S.owner(obj) != run_id:
            return "already-clean"  # never patched, already restored, or another run's
        if o.labels(obj).get(OPT_IN_LABEL) != "true":
            return "refused"  # it no longer opts in: a person decides
        ops = S.patch_ops(obj, S.with_owner(remove(obj, record), None))
        if not ops:
            return "already-clean"
        try:
            kube.guarded_patch(consumer.ref, ops)
        except Conflict:
            continue
        return "restored"
    raise InfrastructureError(f"DaemonSet {consumer} kept changing under us")


def remove_recorded(kube: Kube, store: L.LedgerStore, run: L.RunInfo, consumer: ConsumerRef) -> str | None:
    """Undo this run's change to one consumer from its ledger entry (a step's own partial change on
    SIGTERM); None when the ledger has no entry for it."""
    ledger = store.load(run.namespace, run.run_id)
    entry = ledger.entries.get(entry_id(consumer)) if ledger else None
    if entry is None:
        return None
    action = revert(kube, run.run_id, entry)
    if action != "refused":
        store.set_state(run.namespace, run.run_id, entry.id, L.REVERTED)
    return action


def rolled_out(obj: dict) -> bool:
    """The DaemonSet controller's own completion: every scheduled pod updated and available."""
    meta, status = o.meta(obj), o.status(obj)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False
    want = status.get("desiredNumberScheduled", 0)
    return status.get("updatedNumberScheduled", 0) == want and status.get("numberAvailable", 0) == want
