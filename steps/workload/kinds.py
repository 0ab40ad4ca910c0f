"""Finding the workload a run targets, and reading/patching it through the API (uses steps.workload.dynamo's and shim_patch's pure functions)."""

from __future__ import annotations

from steps.errors import BadInput, InfrastructureError
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref, backoff
from steps.workload import dynamo as dgd
from steps.workload.shim_patch import patch_ops

PLURALS = {"deployment": ("apps/v1", "deployments"), "statefulset": ("apps/v1", "statefulsets")}


def resolve(kube: Kube, namespace: str, kind: str, name: str, dgd_version: str = "auto") -> tuple[Ref, dict]:
    """The target's Ref (with the DGD version that serves it) and the live object; BadInput if missing."""
    if kind == "dgd":
        versions = dgd.DGD_VERSIONS[::-1] if dgd_version == "auto" else (dgd_version,)
        for version in versions:
            ref = Ref(f"{dgd.DGD_GROUP}/{version}", dgd.DGD_PLURAL, namespace, name)
            try:
                return ref, kube.get(ref)
            except NotFound:
                continue
        raise BadInput(f"DynamoGraphDeployment {namespace}/{name} not found ({'/'.join(versions)})")
    api_version, plural = PLURALS[kind]
    ref = Ref(api_version, plural, namespace, name)
    obj = kube.get_or_none(ref)
    if obj is None:
        raise BadInput(f"{kind} {namespace}/{name} not found")
    return ref, obj


def worker_pod_selector(obj: dict) -> str:
    """Label selector of the GPU worker pods (the operator's labels for a DGD, the selector otherwise)."""
    kind = dgd.workload_kind(obj)
    if kind.startswith("dgd"):
        return dgd.gpu_worker_selector(obj["metadata"]["name"])
    labels = (o.spec(obj).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        raise BadInput(f"{obj['kind']} {obj['metadata']['name']} has no matchLabels selector")
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def patch_with_retry(kube: Kube, ref: Ref, compute, attempts: int = 20) -> tuple[dict, dict | None]:
    """Read-compute-patch until the resourceVersion-guarded patch lands (a concurrent writer makes it
    fail; we re-read and recompute so their change survives). `compute(obj)` returns the new object.
    Returns (object before, object after) — after is None when nothing needed changing."""
    for attempt in range(attempts):
        if attempt:
            backoff(attempt)
        try:
            current = kube.get(ref)
        except NotFound:
            raise
        new = compute(current)
        ops = patch_ops(current, new)
        if not ops:
            return current, None
        try:
            return current, kube.guarded_patch(ref, ops)
        except Conflict:
            continue
    raise InfrastructureError(f"{ref} kept changing under us ({attempts} attempts)")
