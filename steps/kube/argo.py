"""Argo's Workflow objects as faultflow reads them: where they live in the API and when one is over."""

from __future__ import annotations

from steps.kube.client import Ref

ARGO_GROUP_VERSION = "argoproj.io/v1alpha1"
# Argo's completed phases (`WorkflowStatus.Fulfilled`): nothing more happens to such a Workflow.
COMPLETED_PHASES = ("Succeeded", "Failed", "Error")


def workflow_ref(namespace: str | None, name: str = "") -> Ref:
    return Ref(ARGO_GROUP_VERSION, "workflows", namespace, name)


def completed(workflow: dict) -> bool:
    return ((workflow.get("status") or {}).get("phase") or "") in COMPLETED_PHASES
