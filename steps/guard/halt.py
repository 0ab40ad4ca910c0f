"""The cluster-wide halt: `faultflow halt` stops every running faultflow Workflow and keeps new runs
from starting until an admin lifts it.

The switch is ConfigMap `faultflow-halt` in faultflow's namespace; the halt is in force while it
exists, whatever it holds (its data — reason, when, by whom — is for people). Existence, not a value,
because of who can do what there: faultflow's step accounts may create and update ConfigMaps in that
namespace (the run ledgers) but none may delete one, so a step can at most (re)set a halt — the safe
direction — and only someone allowed to delete ConfigMaps in faultflow's namespace, an admin, can
lift it (README "Who can do what").

Stopping uses the same path as the abort watcher (`steps.guard.stop`: `argo stop`'s patch), so every
stopped run's exit handler reverts its fault.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from steps.errors import CheckFailed
from steps.guard.stop import StopResult, running_workflows, stop_workflow
from steps.installation_names import HALT_NAME
from steps.kube.client import Conflict, Kube, NotFound, Ref

HALT_LABEL = "faultflow.dev/halt"


def halt_ref(namespace: str) -> Ref:
    return Ref("v1", "configmaps", namespace, HALT_NAME)


@dataclass(frozen=True)
class Halt:
    namespace: str
    reason: str
    set_at: str  # RFC 3339, as the ConfigMap holds it
    set_by: str

    def describe(self) -> str:
        by = f" by {self.set_by}" if self.set_by else ""
        return f"halt in force since {self.set_at or '?'}{by}: {self.reason or 'no reason given'}"


def read(kube: Kube, namespace: str) -> Halt | None:
    obj = kube.get_or_none(halt_ref(namespace))
    if obj is None:
        return None
    data = obj.get("data") or {}
    return Halt(namespace, str(data.get("reason", "")), str(data.get("set-at", "")), str(data.get("set-by", "")))


def who_am_i(kube: Kube) -> str:
    """The caller's user name as the API server sees it (SelfSubjectReview); empty where not served."""
    try:
        review = kube.create(
            Ref("authentication.k8s.io/v1", "selfsubjectreviews", None, ""),
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    except Exception:  # noqa: BLE001 - who set the halt is a courtesy; the halt itself must not depend on it
        return ""
    return str(((review.get("status") or {}).get("userInfo") or {}).get("username") or "")


def set_halt(kube: Kube, namespace: str, reason: str) -> Halt:
    """Create the switch, or update its reason when it is already set (idempotent)."""
    data = {"reason": reason, "set-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "set-by": who_am_i(kube)}
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": HALT_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "faultflow", HALT_LABEL: "true"},
        },
        "data": data,
    }
    try:
        kube.create(halt_ref(namespace), body)
    except Conflict:
        kube.merge_patch(halt_ref(namespace), {"data": data})
    halt = read(kube, namespace)
    assert halt is not None
    return halt


def clear(kube: Kube, namespace: str) -> bool:
    """Lift the halt; False when none was in force."""
    try:
        kube.request("DELETE", halt_ref(namespace).path())
    except NotFound:
        return False
    return True


def stop_all(kube: Kube, namespace: str, reason: str) -> list[StopResult]:
    """Stop every running faultflow Workflow in its namespace (their exit handlers revert the faults)."""
    return [stop_workflow(kube, namespace, name, reason) for name in running_workflows(kube, namespace)]


def refuse_if_halted(kube: Kube, namespace: str) -> None:
    """Preflight: no run starts while a halt is in force (a refused precondition: CheckFailed)."""
    halt = read(kube, namespace)
    if halt is not None:
        raise CheckFailed(f"faultflow is halted ({halt.describe()}); nothing injected — an admin lifts it with `faultflow halt --clear`")
