"""Reading Kubernetes objects as the API hands them over (plain dicts), where any optional field may be
absent or null: an object without labels has no `metadata.labels` at all, a pod not yet scheduled has
no `status.conditions`. Each reader answers the empty value then, so callers ask one question instead
of spelling out `(obj.get("metadata") or {}).get(...)` chains.

Pure functions, no API calls. Fields every stored object has (`metadata.name`, `resourceVersion` of
a listing) are still read with `obj["metadata"]["name"]` by callers: a KeyError there is a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = Mapping[str, Any]

FINISHED_PHASES = ("Succeeded", "Failed")  # a pod's terminal phases: its containers will not run again


def meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def spec(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def status(obj: Obj) -> Mapping[str, Any]:
    return obj.get("status") or {}


def name(obj: Obj) -> str | None:
    return meta(obj).get("name")


def resource_version(obj: Obj) -> str | None:
    return meta(obj).get("resourceVersion")


def labels(obj: Obj) -> Mapping[str, str]:
    return meta(obj).get("labels") or {}


def annotations_of(obj: Obj) -> Mapping[str, str]:
    return meta(obj).get("annotations") or {}


def terminating(obj: Obj) -> bool:
    """Deletion requested (graceful deletion under way): the object is going, whatever its status says."""
    return bool(meta(obj).get("deletionTimestamp"))


def phase(pod: Obj) -> str | None:
    return status(pod).get("phase")


def finished(pod: Obj) -> bool:
    return phase(pod) in FINISHED_PHASES


def node_name(pod: Obj) -> str | None:
    """The node the pod is bound to (None while unscheduled)."""
    return spec(pod).get("nodeName")


def condition_true(obj: Obj, kind: str) -> bool:
    """The object's status condition `kind` is present and "True" (the first one of that type decides)."""
    for condition in status(obj).get("conditions") or []:
        if condition.get("type") == kind:
            return bool(condition.get("status") == "True")
    return False


def pod_ready(pod: Obj) -> bool:
    return condition_true(pod, "Ready")


def node_ready(node: Obj) -> bool:
    return condition_true(node, "Ready")


def unschedulable(node: Obj) -> bool:
    """Cordoned (`spec.unschedulable`): the scheduler places no new pods there."""
    return bool(spec(node).get("unschedulable"))
