"""`faultflow step inject-cuda-shim`: load the CUDA shim (passthrough) into the GPU workers.

Ledger first (the exact original object and what will be added), then one resourceVersion-guarded
JSON patch for all workers (atomic: a crash leaves either nothing or everything), then the watch for
the rollout and the marker check. Running it again adds nothing: workers that already carry the
shim are skipped. SIGTERM before the step finishes removes what it added.
"""

from __future__ import annotations

import click

from steps import dgd, event_names as E, ledger as L
from steps.errors import BadInput, CheckFailed, InfrastructureError
from steps.events import emit
from steps.kube import Conflict, Kube, Ref, backoff, connect
from steps.options import Duration, K8sName, Outputs, RunId, Target, Terminated, XidType, common_cluster_options, sigterm_raises
from steps.rollout import MARKER, marker_seen, wait_rolled_out
from steps.workloads import patch_with_retry, pod_ready, resolve, worker_pod_selector

STEP = "inject-cuda-shim"


def entry_id(ref: Ref) -> str:
    return f"shim-{ref.plural}-{ref.name}"


def _merge(old: dgd.ShimRecord | None, new: dgd.ShimRecord) -> dgd.ShimRecord:
    if old is None:
        return new
    names = {c.name for c in old.components}
    return dgd.ShimRecord(kind=old.kind, components=old.components + [c for c in new.components if c.name not in names])


def inject(kube: Kube, store: L.LedgerStore, run: L.RunInfo, ref: Ref, cfg: dgd.ShimConfig) -> list[str]:
    """Records, then patches. Returns the components patched now ([] when already injected)."""
    patched: list[str] = []
    for attempt in range(20):
        if attempt:
            backoff(attempt)
        obj = kube.get(ref)
        holder = dgd.owner(obj)
        if holder not in (None, run.run_id):
            raise CheckFailed(f"{ref} already carries a fault of run {holder}; recover it first (faultflow faults recover {holder})")
        new, record = dgd.apply_shim(obj, cfg)
        if not record.components:
            return patched
        ledger = store.load(run.namespace, run.run_id)
        previous = ledger.entries.get(entry_id(ref)) if ledger else None
        old_record = dgd.ShimRecord.from_dict(previous.data["record"]) if previous else None
        entry = L.Entry(
            id=entry_id(ref), kind=L.WORKLOAD_SHIM, target=ref.to_dict(),
            data={
                "record": _merge(old_record, record).to_dict(),
                "original": previous.data["original"] if previous else obj,
                "container": cfg.container,
                "xid": cfg.xid,
            },
        )
        store.record(run.namespace, run.run_id, entry)  # BEFORE the change
        ops = dgd.patch_ops(obj, dgd.with_owner(new, run.run_id))
        try:
            kube.guarded_patch(ref, ops)
        except Conflict:
            continue  # someone wrote meanwhile: re-read, recompute, their change survives
        store.set_state(run.namespace, run.run_id, entry.id, L.APPLIED)
        patched.extend(c.name for c in record.components)
        return patched
    raise InfrastructureError(f"{ref} kept changing under us")


def remove(kube: Kube, store: L.LedgerStore, run: L.RunInfo, ref: Ref) -> bool:
    from steps.revert import revert_workload

    ledger = store.load(run.namespace, run.run_id)
    entry = ledger.entries.get(entry_id(ref)) if ledger else None
    if entry is None:
        return False
    revert_workload(kube, run.run_id, entry)
    store.set_state(run.namespace, run.run_id, entry.id, L.REVERTED)
    return True


def pods_missing_marker(kube: Kube, namespace: str, obj: dict, toggle_file: str, container: str | None) -> tuple[list[str], int]:
    """(Ready worker pods whose log lacks the shim's start-up marker, number of Ready worker pods)."""
    pods = kube.list(Ref("v1", "pods", namespace, ""), label_selector=worker_pod_selector(obj)).get("items") or []
    pods = [p for p in pods if pod_ready(p) and not (p["metadata"].get("deletionTimestamp"))]
    missing = []
    for pod in pods:
        names = [c["name"] for c in pod["spec"]["containers"]]
        name = container or ("main" if "main" in names else names[0])
        path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/log?container={name}&limitBytes=1048576"
        text = kube.request_text("GET", path)
        if not marker_seen(text, toggle_file):
            missing.append(pod["metadata"]["name"])
    return missing, len(pods)


@click.command(STEP)
@click.option("--run-id", required=True, type=RunId())
@click.option("--namespace", required=True, type=K8sName(label=True))
@click.option("--target", required=True, type=Target(), help="dgd/NAME, deployment/NAME or statefulset/NAME.")
@click.option("--dgd-version", default="auto", type=click.Choice(["auto", *dgd.DGD_VERSIONS]), show_default=True)
@click.option("--shim-image", required=True, help="Image holding /opt/faultflow/libfaultflow_cuda.so.")
@click.option("--xid", required=True, type=XidType())
@click.option("--toggle-dir", default="/var/lib/faultflow", show_default=True)
@click.option("--container", default=None, help="Main container of a Deployment/StatefulSet (default: first).")
@click.option("--timeout", default="10m", show_default=True, type=Duration(), help="Rollout deadline.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the rollout.")
@click.option("--verify-marker/--no-verify-marker", default=True, show_default=True, help="Check worker logs for the shim's marker.")
@click.option("--outputs-dir", default=None)
@common_cluster_options
def command(run_id, namespace, target, dgd_version, shim_image, xid, toggle_dir, container, timeout, wait, verify_marker,
            outputs_dir, kubeconfig, context):
    """Patch the workload's GPU workers to load the CUDA shim in passthrough mode."""
    outputs = Outputs(outputs_dir)
    outputs.check()
    if not shim_image.strip() or any(c.isspace() for c in shim_image):
        raise BadInput(f"--shim-image {shim_image!r} is not an image reference")
    if not toggle_dir.startswith("/") or toggle_dir.rstrip("/") in ("", "/"):
        raise BadInput(f"--toggle-dir {toggle_dir!r} must be an absolute directory below /")
    kube = connect(kubeconfig, context)
    store = L.LedgerStore(kube)
    kind, name = target
    ref, obj = resolve(kube, namespace, kind, name, dgd_version)
    ledger = store.require(namespace, run_id)
    cfg = dgd.ShimConfig(image=shim_image, xid=xid, toggle_dir=toggle_dir, container=container)
    workers = [c.name for c in dgd.gpu_workers(obj, container)]
    with sigterm_raises():
        try:
            patched = inject(kube, store, ledger.run, ref, cfg)
            emit(STEP, "shim_patched", run_id=run_id, target=str(ref), components=patched, already=not patched)
            if wait:
                waited = wait_rolled_out(kube, ref, workers, timeout)
                emit(STEP, "rollout_done", run_id=run_id, target=str(ref), seconds=round(waited, 3))
                if verify_marker:
                    missing, total = pods_missing_marker(kube, namespace, kube.get(ref), cfg.toggle_file, container)
                    if total == 0:
                        raise CheckFailed(f"no Ready worker pod of {ref} after the rollout: cannot check the shim marker")
                    if missing:
                        raise CheckFailed(
                            f"the shim did not load in {len(missing)} of {total} Ready worker pods ({', '.join(missing[:5])}): "
                            f"no '{MARKER} ... toggle={cfg.toggle_file} (mapped)' line in their logs")
                    emit(STEP, "shim_verified", run_id=run_id, pods=total)
        except Terminated:
            remove(kube, store, ledger.run, ref)
            emit(STEP, E.DGD_RESTORED, run_id=run_id, target=str(ref), reason="SIGTERM")
            raise
    outputs.write("patched-components", ",".join(workers))
