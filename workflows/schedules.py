"""The CronWorkflows: `nightly-resilience` (a configurable list of scenarios, one after another) and
`janitor` (every 15 minutes: reverts orphaned runs, the second line of defence behind the exit
handler, which `argo terminate` skips)."""

from __future__ import annotations

import json

from hera.workflows import Container, CronWorkflow, Parameter, Resource, Steps
from hera.workflows import models as m

from workflows.render import PART_OF, retry_strategy
from workflows.roles import EXECUTOR_SERVICE_ACCOUNT, JANITOR, SUITE
from workflows.stages.common import STEPS_IMAGE

TIMEZONE = "Etc/UTC"
NIGHTLY_SCHEDULE = "0 2 * * *"
NIGHTLY_SCENARIO_DEADLINE_S = 4 * 3600


def _cron(name: str, title: str, description: str, schedule: str, **kwargs) -> CronWorkflow:
    return CronWorkflow(
        name=name,
        labels=dict(PART_OF),
        annotations={"workflows.argoproj.io/title": title, "workflows.argoproj.io/description": description},
        schedules=[schedule],
        timezone=TIMEZONE,
        concurrency_policy="Forbid",
        starting_deadline_seconds=600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=5,
        **kwargs,
    )


def nightly(scenarios: tuple[str, ...]) -> CronWorkflow:
    """Runs each scenario as its own Workflow (so its exit handler, mutex and parameters apply), one
    at a time, and goes on after a failed one; the suite fails when any scenario failed. The list is
    the `scenarios` argument (JSON), so it can be changed without re-rendering. A resource template's
    only container is Argo's executor running as the pod's account, so the suite account carries the
    executor's permissions itself (no separate executor account here)."""
    child = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": "{{inputs.parameters.scenario}}-nightly-",
                     "labels": {**PART_OF, "faultflow.dev/suite": "nightly-resilience"}},
        "spec": {"workflowTemplateRef": {"name": "{{inputs.parameters.scenario}}"}},
    }
    with _cron(
        "nightly-resilience", "Nightly resilience suite",
        "Runs the listed faultflow scenarios one after another every night and fails if any of them failed.",
        NIGHTLY_SCHEDULE, entrypoint="suite", service_account_name=SUITE.service_account,
        arguments=[Parameter(name="scenarios", value=json.dumps(list(scenarios)),
                             description="JSON list of scenario (WorkflowTemplate) names to run, in order.")],
        active_deadline_seconds=NIGHTLY_SCENARIO_DEADLINE_S * max(1, len(scenarios)),
    ) as cron:
        run = Resource(
            name="run-scenario", action="create", manifest=json.dumps(child, sort_keys=True), set_owner_reference=True,
            success_condition="status.phase == Succeeded", failure_condition="status.phase in (Failed, Error)",
            inputs=[Parameter(name="scenario")], active_deadline_seconds=NIGHTLY_SCENARIO_DEADLINE_S,
        )
        with Steps(name="suite", parallelism=1):
            run(name="scenario", arguments={"scenario": "{{item}}"}, with_param="{{workflow.parameters.scenarios}}",
                continue_on=m.ContinueOn(failed=True))
    return cron


def janitor() -> CronWorkflow:
    with _cron(
        "janitor", "faultflow janitor",
        "Every 15 minutes: reverts faults whose run TTL passed or whose workflow is gone or finished.",
        "*/15 * * * *", entrypoint="janitor", service_account_name=JANITOR.service_account,
        executor=m.ExecutorConfig(service_account_name=EXECUTOR_SERVICE_ACCOUNT),
    ) as cron:
        Container(
            name="janitor", image=STEPS_IMAGE, command=["faultflow", "step", "janitor"],
            args=["--timeout", "5m"],  # images and the toggle directory: ConfigMap faultflow-config
            active_deadline_seconds=900, retry_strategy=retry_strategy(),
            security_context=m.SecurityContext(run_as_non_root=True, allow_privilege_escalation=False,
                                               capabilities=m.Capabilities(drop=["ALL"])),
            resources=m.ResourceRequirements(requests={"cpu": "50m", "memory": "128Mi"}, limits={"memory": "512Mi"}),
        )
    return cron
