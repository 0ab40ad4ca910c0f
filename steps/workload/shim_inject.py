"""Loading the CUDA shim into a workload and taking it out again, ledger first (the domain half of inject-cuda-shim)."""

from __future__ import annotations

from steps.errors import CheckFailed, InfrastructureError
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, Ref, backoff
from steps.run import ledger as L
from steps.workload import shim_patch
from steps.workload.kinds import worker_pod_selector
from steps.workload.rollout import marker_seen


def entry_id(ref: Ref) -> str:
    return f"shim-{ref.plural}-{ref.name}"


def _merge(old: shim_patch.ShimRecord | None, new: shim_patch.ShimRecord) -> shim_patch.ShimRecord:
    if old is None:
        return new
    names = {c.name for c in old.components}
    return shim_patch.ShimRecord(kind=old.kind, components=old.components + [c for c in new.components if c.name not in names])


def inject(kube: Kube, store: L.LedgerStore, run: L.RunInfo, ref: Ref, cfg: shim_patch.ShimConfig) -> list[str]:
    """Records, then patches. Returns the components patched now ([] when already injected)."""
    patched: list[str] = []
    for attempt in range(20):
        if attempt:
            backoff(attempt)
        obj = kube.get(ref)
        holder = shim_patch.owner(obj)
        if holder not in (None, run.run_id):
            raise CheckFailed(f"{ref} already carries a fault of run {holder}; recover it first (faultflow faults recover {holder})")
        new, record = shim_patch.apply_shim(obj, cfg)
        if not record.components:
            return patched
        ledger = store.load(run.namespace, run.run_id)
        previous = ledger.entries.get(entry_id(ref)) if ledger else None
        old_record = shim_patch.ShimRecord.from_dict(previous.data["record"]) if previous else None
        merged = _merge(old_record, record)
        # Only what the revert needs (never the object: its status, managedFields and env values).
        entry = L.Entry(
            id=entry_id(ref),
            kind=L.WORKLOAD_SHIM,
            target=ref.to_dict(),
            data={"record": merged.to_dict(), "container": cfg.container, "xid": cfg.xid},
        )
        store.record(run.namespace, run.run_id, entry)  # BEFORE the change
        # Read again after the ledger write: the patch is computed from (and guarded by) an object read
        # one round trip before it, so a busy writer (a planner scaling replicas) does not win every
        # race against our ledger write. The entry recorded stays right as long as the patch would
        # record the same originals; otherwise start over.
        obj = kube.get(ref)
        if shim_patch.owner(obj) not in (None, run.run_id):
            continue  # someone else's fault arrived meanwhile: the check at the top refuses it
        new, again = shim_patch.apply_shim(obj, cfg)
        if again != record:
            continue
        # The same record on the object itself, so a deleted ledger leaves nothing unrecoverable.
        mark = shim_patch.ShimMark(run.run_id, store.home, merged, cfg.container)
        ops = shim_patch.patch_ops(obj, shim_patch.with_owner(new, run.run_id, mark))
        try:
            kube.guarded_patch(ref, ops)
        except Conflict:
            continue  # someone wrote meanwhile: re-read, recompute, their change survives
        store.set_state(run.namespace, run.run_id, entry.id, L.APPLIED)
        patched.extend(c.name for c in record.components)
        return patched
    raise InfrastructureError(f"{ref} kept changing under us")


def remove(kube: Kube, store: L.LedgerStore, run: L.RunInfo, ref: Ref) -> bool:
    from steps.run.revert import revert_workload

    ledger = store.load(run.namespace, run.run_id)
    entry = ledger.entries.get(entry_id(ref)) if ledger else None
    if entry is None:
        return False
    revert_workload(kube, run.run_id, entry, run.namespace)
    store.set_state(run.namespace, run.run_id, entry.id, L.REVERTED)
    return True


def ready_workers(kube: Kube, namespace: str, obj: dict, node: str | None = None) -> list[dict]:
    """The workload's Ready worker pods not being deleted (on `node` only when given)."""
    pods = kube.list(Ref("v1", "pods", namespace, ""), label_selector=worker_pod_selector(obj)).get("items") or []
    return [p for p in pods if o.pod_ready(p) and not o.terminating(p) and (node is None or o.node_name(p) == node)]


def pods_missing_marker(
    kube: Kube, namespace: str, obj: dict, toggle_file: str, container: str | None, node: str | None = None
) -> tuple[list[str], int]:
    """(Ready worker pods whose log lacks the shim's start-up marker, number of Ready worker pods), on
    `node` only when given (the run's target: workers elsewhere do not make the fault reach it)."""
    pods = ready_workers(kube, namespace, obj, node)
    missing = []
    for pod in pods:
        names = [c["name"] for c in pod["spec"]["containers"]]
        name = container or ("main" if "main" in names else names[0])
        path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/log?container={name}&limitBytes=1048576"
        text = kube.request_text("GET", path)
        if not marker_seen(text, toggle_file):
            missing.append(pod["metadata"]["name"])
    return missing, len(pods)
