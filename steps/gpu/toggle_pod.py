"""Short pods pinned to a node: how steps without host access touch the node (the toggle file).

`spec.nodeName` is set directly (no scheduler), and every taint is tolerated, so the pod runs on a
node NVSentinel has cordoned or tainted — exactly when the toggle must be switched off. No service
account token: the pod only writes one file under a hostPath.

Who may write the toggle: the file belongs to `TOGGLE_UID` (the steps image's user), mode 0644 — the
shim image's install.sh creates it so (steps.workload.shim_patch passes the owner), and writes to it
in place keep it so. The toggle-off pod runs as exactly that user, never as root, with no
capabilities, whatever USER a custom `--node-agent-image` declares. Not world-writable, because any pod
on the node that could mount the directory could then switch CUDA faults on; not a root pod,
because switching a fault off needs nothing root has.
"""

from __future__ import annotations

import hashlib
import time

from steps.errors import CheckFailed, InfrastructureError
from steps.gpu import toggle
from steps.kube import objects as o
from steps.kube.client import Kube, NotFound, Ref

PURPOSE_LABEL = "faultflow.dev/purpose"
# The steps and node-agent images' user (their Dockerfiles' `USER`; tests hold them equal) and the toggle file's owner.
TOGGLE_UID = 10001


def toggle_owner() -> str:
    """`uid:gid` for the shim image's install.sh."""
    return f"{TOGGLE_UID}:{TOGGLE_UID}"


def restricted_security_context(uid: int) -> dict:
    """What PSA `restricted` asks of a container, as `uid`."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def toggle_off_pod(run_id: str, namespace: str, node: str, toggle_dir: str, image: str) -> dict:
    digest = hashlib.sha256(f"{run_id}/{node}/{toggle_dir}".encode()).hexdigest()[:10]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"faultflow-toggle-off-{digest}",
            "namespace": namespace,
            "labels": {"faultflow.dev/run": run_id, PURPOSE_LABEL: "toggle-off"},
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "toggle-off",
                    "image": image,
                    "command": ["faultflow", "shim", "off", "--file", toggle.file_in(toggle_dir)],
                    "volumeMounts": [{"name": "toggle", "mountPath": toggle_dir}],
                    "securityContext": restricted_security_context(TOGGLE_UID),
                    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                }
            ],
            "volumes": [{"name": "toggle", "hostPath": {"path": toggle_dir, "type": "DirectoryOrCreate"}}],
        },
    }


def run_to_completion(kube: Kube, pod: dict, timeout_s: float) -> None:
    """Creates the pod (or reuses a finished one of the same name) and watches it to Succeeded."""
    ref = Ref("v1", "pods", pod["metadata"]["namespace"], pod["metadata"]["name"])
    existing = kube.get_or_none(ref)
    if existing is not None and o.phase(existing) == "Failed":
        kube.delete(ref)
        _wait_gone(kube, ref, timeout_s)
        existing = None
    if existing is None:
        try:
            kube.create(ref, pod)
        except Exception as error:
            if "already exists" not in str(error):
                raise
    finished = watch_until_finished(kube, ref, timeout_s, f"on node {pod['spec']['nodeName']}")
    kube.delete(ref)  # finished either way: the next attempt starts from a fresh pod
    if o.phase(finished) == "Failed":
        raise InfrastructureError(f"pod {ref.name} on node {pod['spec']['nodeName']} failed")


def watch_until_finished(kube: Kube, ref: Ref, timeout_s: float, where: str = "") -> dict:
    """Watches a pod until it is Succeeded or Failed and returns it; CheckFailed at the deadline."""
    deadline = time.monotonic() + timeout_s
    obj = kube.get(ref)
    rv = obj["metadata"]["resourceVersion"]
    while True:
        if o.finished(obj):
            return obj
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CheckFailed(f"pod {ref.name} did not finish {where} within {timeout_s:.0f}s".replace("  ", " "))
        for event in kube.watch(
            Ref("v1", "pods", ref.namespace, ""),
            rv,
            field_selector=f"metadata.name={ref.name}",
            timeout_seconds=max(1, int(min(remaining, 60))),
        ):
            if event["type"] == "ERROR":
                obj = kube.get(ref)  # 410: re-read
                rv = obj["metadata"]["resourceVersion"]
                break
            rv = event["object"]["metadata"]["resourceVersion"]
            if event["type"] in ("ADDED", "MODIFIED"):
                obj = event["object"]
                if o.finished(obj):
                    break
            if event["type"] == "DELETED":
                raise InfrastructureError(f"pod {ref.name} was deleted before it finished")
            if time.monotonic() > deadline:
                break


def _wait_gone(kube: Kube, ref: Ref, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while kube.get_or_none(ref) is not None:
        if time.monotonic() > deadline:
            raise CheckFailed(f"pod {ref.name} was not deleted within {timeout_s:.0f}s")
        try:
            obj = kube.get(ref)
        except NotFound:
            return
        for event in kube.watch(
            Ref("v1", "pods", ref.namespace, ""),
            obj["metadata"]["resourceVersion"],
            field_selector=f"metadata.name={ref.name}",
            timeout_seconds=5,
        ):
            if event["type"] == "DELETED":
                return
