"""Waiting for a patched workload to finish rolling out, by watching it (deadline, no sleeps),
and finding the shim's start-up marker in the worker logs."""

from __future__ import annotations

import time

from steps.errors import CheckFailed
from steps.kube import objects as o
from steps.kube.client import Kube, Ref
from steps.workload import dynamo as dgd


def _status_map(obj: dict) -> dict:
    status = o.status(obj)
    return status.get("components") or status.get("services") or {}


def rolled_out(obj: dict, component_names: list[str]) -> bool:
    """DGD: observedGeneration caught up, Ready, every touched component updated and ready.
    Deployment/StatefulSet: the controller's own completion criteria."""
    meta, spec, status = o.meta(obj), o.spec(obj), o.status(obj)
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False
    kind = dgd.workload_kind(obj)
    if kind.startswith("dgd"):
        if not o.condition_true(obj, "Ready") or (status.get("rollingUpdate") or {}).get("phase") in ("Pending", "InProgress"):
            return False
        per = _status_map(obj)
        for name in component_names:
            s = per.get(name)
            if s is None:
                return False
            want = s.get("replicas", 0)
            if s.get("updatedReplicas", 0) != want or s.get("readyReplicas", s.get("availableReplicas", 0)) != want:
                return False
        return True
    want = spec.get("replicas", 1)
    if kind == "deployment":
        return status.get("updatedReplicas", 0) == want and status.get("availableReplicas", 0) == want and status.get("replicas", 0) == want
    return (
        status.get("updatedReplicas", 0) == want
        and status.get("readyReplicas", 0) == want
        and status.get("currentRevision") == status.get("updateRevision")
    )


def wait_rolled_out(kube: Kube, ref: Ref, component_names: list[str], timeout_s: float, done=None) -> float:
    """Watches the object until `rolled_out` (or `done(obj)`, for kinds it does not know); returns
    seconds waited; CheckFailed at the deadline."""
    if done is None:
        done = lambda obj: rolled_out(obj, component_names)  # noqa: E731
    start = time.monotonic()
    deadline = start + timeout_s
    collection = Ref(ref.api_version, ref.plural, ref.namespace, "")
    obj = kube.get(ref)
    while True:
        if done(obj):
            return time.monotonic() - start
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CheckFailed(f"{ref} did not finish rolling out within {timeout_s:.0f}s")
        rv = obj["metadata"]["resourceVersion"]
        for event in kube.watch(
            collection, rv, field_selector=f"metadata.name={ref.name}", timeout_seconds=max(1, int(min(remaining, 60)))
        ):
            if event["type"] == "ERROR":
                break  # 410 Gone and friends: re-read below
            if event["type"] in ("ADDED", "MODIFIED"):
                obj = event["object"]
                if done(obj):
                    return time.monotonic() - start
            if time.monotonic() > deadline:
                break
        obj = kube.get(ref)


MARKER = "faultflow-shim: loaded"


def marker_seen(log_text: str, toggle_file: str) -> bool:
    """The shim prints one stderr line at load: `faultflow-shim: loaded … toggle=<path> (mapped)`.

    The path must be the toggle file or end with it: a container sees the hostPath at its mount
    path, while a runtime without mount namespaces (the lab's kubelet simulator runs pods as plain
    processes) hands the process the host-side path, `<node root>/var/lib/faultflow/toggle`."""
    for line in log_text.splitlines():
        if not line.startswith(MARKER) or not line.endswith(" (mapped)"):
            continue
        _, sep, path = line[: -len(" (mapped)")].rpartition(" toggle=")
        if sep and (path == toggle_file or path.endswith("/" + toggle_file.lstrip("/"))):
            return True
    return False
