"""Workload preconditions (issue 15 item 11): will the target namespace admit what inject-cuda-shim adds?

Checked by preflight before anything is patched, so a run that would end with workers the API server
refuses (a rollout that never comes) stops at once, with what to change in one line:
* Pod Security Admission: `baseline` and `restricted` refuse hostPath volumes, and the shim's init
  container and workers mount the node's toggle directory (`enforce` label of the namespace; a
  namespace without one gets the cluster's default, which the API does not tell us);
* ResourceQuota: a quota on cpu/memory (requests or limits) makes the API server refuse a pod any of
  whose containers, init containers included, does not set that resource — unless a LimitRange of
  the namespace fills it in by default.
"""

from __future__ import annotations

from steps.errors import BadInput
from steps.kube import objects as o
from steps.kube.client import Kube, Ref

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
HOSTPATH_REFUSED = ("baseline", "restricted")
# Quota keys that oblige every container to set the resource (`cpu` means requests.cpu).
QUOTA_FIELDS = {
    "cpu": ("requests", "cpu"),
    "memory": ("requests", "memory"),
    "requests.cpu": ("requests", "cpu"),
    "requests.memory": ("requests", "memory"),
    "limits.cpu": ("limits", "cpu"),
    "limits.memory": ("limits", "memory"),
    "ephemeral-storage": ("requests", "ephemeral-storage"),
    "requests.ephemeral-storage": ("requests", "ephemeral-storage"),
    "limits.ephemeral-storage": ("limits", "ephemeral-storage"),
}


def check_pod_security(namespace_obj: dict) -> None:
    level = o.labels(namespace_obj).get(PSA_ENFORCE)
    if level in HOSTPATH_REFUSED:
        name = o.name(namespace_obj)
        raise BadInput(
            f"namespace {name} enforces Pod Security {level!r}, which refuses the shim's hostPath volume (the node's toggle "
            f"directory): label it {PSA_ENFORCE}=privileged for the run, or run xid-only (no shim)"
        )


def _defaulted(limit_ranges: list[dict]) -> set[tuple[str, str]]:
    """(requests|limits, resource) a LimitRange fills into a container that does not set it."""
    filled: set[tuple[str, str]] = set()
    for lr in limit_ranges:
        for item in o.spec(lr).get("limits") or []:
            if item.get("type") != "Container":
                continue
            # A default limit also becomes the request when none is given.
            for resource in item.get("default") or {}:
                filled |= {("limits", resource), ("requests", resource)}
            filled |= {("requests", resource) for resource in item.get("defaultRequest") or {}}
    return filled


def check_quota(kube: Kube, namespace: str, container: dict) -> None:
    """The container we add (the shim's init container) must satisfy every quota of the namespace."""
    quotas = kube.list(Ref("v1", "resourcequotas", namespace, "")).get("items") or []
    if not quotas:
        return
    filled = _defaulted(kube.list(Ref("v1", "limitranges", namespace, "")).get("items") or [])
    resources = container.get("resources") or {}
    for quota in quotas:
        for key in sorted(o.spec(quota).get("hard") or {}):
            field = QUOTA_FIELDS.get(key)
            if field is None:
                continue
            given = set(resources.get(field[0]) or {})
            if field[0] == "requests":
                given |= set(resources.get("limits") or {})  # a limit without a request is also the request
            if field in filled or field[1] in given:
                continue
            raise BadInput(
                f"ResourceQuota {namespace}/{o.name(quota)} requires {field[0]}.{field[1]} on every container and the shim's init "
                f"container {container.get('name')} sets none: add a LimitRange with a default {field[0]}.{field[1]} for "
                f"containers in namespace {namespace}"
            )
