"""Stopping a faultflow Workflow the way `argo stop` does, through the Kubernetes API.

`argo stop NAME` (Argo's `workflow/util.StopWorkflow` → `patchShutdownStrategy`) reads the Workflow,
refuses one that is already completed, and sends the merge patch `{"spec": {"shutdown": "Stop"}}`;
the controller then stops the running pods and still runs the exit handler — our final-cleanup,
which reverts the fault, and the report. (`Terminate` would skip the exit handler: never used.)
Argo v4 adds a label naming who stopped it when it knows the user; we add an annotation saying why
(`faultflow.dev/stop-reason`), which `kubectl get workflow -o yaml` and the Argo UI show.

RBAC: `get` and `patch` on `workflows.argoproj.io` in faultflow's namespace, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from steps.installation_names import SCENARIO_LABEL
from steps.kube.argo import completed, workflow_ref
from steps.kube.client import Kube, NotFound

SHUTDOWN_STOP = "Stop"
STOP_REASON_ANNOTATION = "faultflow.dev/stop-reason"
# faultflow's scenario runs, as every scenario template labels them (workflows.render: workflowMetadata).
# The janitor's runs carry neither label: a halt never stops the janitor, whose reverting it wants.
SCENARIO_SELECTOR = f"app.kubernetes.io/part-of=faultflow,{SCENARIO_LABEL}"


def argo_stop_patch() -> dict:
    """The body `argo stop` sends (a JSON merge patch)."""
    return {"spec": {"shutdown": SHUTDOWN_STOP}}


def stop_patch(reason: str) -> dict:
    return {**argo_stop_patch(), "metadata": {"annotations": {STOP_REASON_ANNOTATION: reason}}}


@dataclass(frozen=True)
class StopResult:
    name: str
    stopped: bool  # False: it had already completed, or was gone
    why: str = ""


def stop_workflow(kube: Kube, namespace: str, name: str, reason: str) -> StopResult:
    """Stop one Workflow (idempotent: a second stop patches the same values again)."""
    ref = workflow_ref(namespace, name)
    try:
        workflow = kube.get(ref)
    except NotFound:
        return StopResult(name, False, "gone")
    if completed(workflow):
        return StopResult(name, False, f"already {workflow['status']['phase']}")
    try:
        kube.merge_patch(ref, stop_patch(reason))
    except NotFound:
        return StopResult(name, False, "gone")
    return StopResult(name, True)


def running_workflows(kube: Kube, namespace: str) -> list[str]:
    """faultflow's scenario Workflows in its namespace that have not completed, by name."""
    try:
        items = kube.list(workflow_ref(namespace), label_selector=SCENARIO_SELECTOR).get("items") or []
    except NotFound:  # Argo's CRDs are not installed: no Workflow can be running
        return []
    return sorted(w["metadata"]["name"] for w in items if not completed(w))
