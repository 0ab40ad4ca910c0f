"""A local run's Workflow object: the run as Argo would record it, so the rest of faultflow treats
a local run like a submitted one.

The runner creates an `argoproj.io/v1alpha1` Workflow (referencing the scenario's WorkflowTemplate,
with the run's parameters) and keeps its `status.phase` current. The steps record its name and uid in
the run ledger, so the janitor's rules apply unchanged: a finished or deleted run's leftovers are
reverted, a Running one is left alone. No Argo controller acts on it — the runner is its controller.
"""

from __future__ import annotations

from dataclasses import dataclass

from steps.kube.client import Kube, NotFound, Ref

WORKFLOWS = ("argoproj.io/v1alpha1", "workflows")
LOCAL_RUN_LABEL = "faultflow.dev/local-run"
RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"
FINISHED = (SUCCEEDED, FAILED, "Error")  # Argo's completed phases


def workflow_ref(namespace: str, name: str) -> Ref:
    return Ref(WORKFLOWS[0], WORKFLOWS[1], namespace, name)


@dataclass
class RunRecord:
    kube: Kube
    namespace: str
    name: str
    uid: str

    @classmethod
    def create(cls, kube: Kube, namespace: str, name: str, scenario: str, values: dict[str, str]) -> RunRecord | None:
        """None when the cluster has no Workflow type (no Argo): then only the run's TTL tells the
        janitor when to sweep."""
        body = {
            "apiVersion": WORKFLOWS[0],
            "kind": "Workflow",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {LOCAL_RUN_LABEL: "true", "workflows.argoproj.io/workflow-template": scenario},
            },
            "spec": {
                "workflowTemplateRef": {"name": scenario},
                "arguments": {"parameters": [{"name": k, "value": v} for k, v in sorted(values.items())]},
            },
        }
        try:
            created = kube.create(workflow_ref(namespace, ""), body)
        except NotFound:
            return None
        record = cls(kube, namespace, name, created["metadata"]["uid"])
        record.set_phase(RUNNING)
        return record

    def set_phase(self, phase: str) -> None:
        try:
            self.kube.merge_patch(workflow_ref(self.namespace, self.name), {"status": {"phase": phase}})
        except NotFound:
            pass  # deleted by a person (`argo delete`): nothing left to record
