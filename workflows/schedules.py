"""The CronWorkflows: `nightly-resilience` (a configurable list of scenarios, one after another, then
a gate that fails the suite when any of them failed) and `janitor` (every 15 minutes: reverts
orphaned runs, the second line of defence behind the exit handler, which `argo terminate` skips).
Each runs a WorkflowTemplate of the same name by reference, so both work under Argo's
`templateReferencing: Strict`."""

from __future__ import annotations

import json

from hera.workflows import Container, CronWorkflow, Parameter, Resource, Steps, WorkflowTemplate
from hera.workflows import models as m

from steps.installation_names import SCENARIO_LABEL, SUITE_RUN_LABEL
from workflows import retention
from workflows.render import PART_OF, retry_strategy
from workflows.roles import EXECUTOR_SERVICE_ACCOUNT, JANITOR, SUITE
from workflows.stages.common import STEPS_IMAGE

TIMEZONE = "Etc/UTC"
NIGHTLY_SCHEDULE = "0 2 * * *"
NIGHTLY_SCENARIO_DEADLINE_S = 4 * 3600
GATE_DEADLINE_S = 600
# The janitor's pod: also what the ValidatingAdmissionPolicy lets the janitor account run (workflows.admission).
JANITOR_COMMAND = ("faultflow", "step", "janitor")
JANITOR_ARGS = ("--timeout", "5m")  # images and the toggle directory: ConfigMap faultflow-config


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


RUNNER_SECURITY = m.SecurityContext(run_as_non_root=True, allow_privilege_escalation=False, capabilities=m.Capabilities(drop=["ALL"]))
RUNNER_RESOURCES = m.ResourceRequirements(requests={"cpu": "50m", "memory": "128Mi"}, limits={"memory": "512Mi"})


# The scenario name goes into the child's JSON manifest as a JSON value Argo itself encodes
# (`toJson` in an expression tag), never spliced into the text: an item of the `scenarios` parameter
# such as `gpu-fault", "serviceAccountName": "…` must stay one (invalid) name, not add fields.
SCENARIO, GENERATE_NAME = "\x00scenario\x00", "\x00generate-name\x00"
ENCODED = {
    SCENARIO: "{{=toJson(inputs.parameters.scenario)}}",
    GENERATE_NAME: "{{=toJson(inputs.parameters.scenario + '-nightly-')}}",
}


def child_manifest(child: dict) -> str:
    text = json.dumps(child, sort_keys=True)
    for placeholder, tag in ENCODED.items():
        text = text.replace(json.dumps(placeholder), tag)
    return text


def nightly_template(scenarios: tuple[str, ...]) -> WorkflowTemplate:
    """Runs each scenario as its own Workflow (so its exit handler, mutex and parameters apply), one
    at a time, and goes on after a failed one; then the gate fails the suite when any scenario did
    not succeed (`continueOn` alone would leave the suite Succeeded: Argo's own e2e
    TestContinueOnFail expects exactly that). The list is the `scenarios` argument (JSON), so it can
    be changed without re-rendering. A WorkflowTemplate the CronWorkflow references, so the suite
    also runs under Argo's `templateReferencing: Strict`. A resource template's only container is
    Argo's executor running as the pod's account, so the suite account carries the executor's
    permissions itself (no separate executor account here)."""
    if not scenarios:
        raise ValueError("the nightly suite needs at least one scenario")  # `render` refuses this first (exit 2)
    child = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": GENERATE_NAME,
            "labels": {
                **PART_OF,
                "faultflow.dev/suite": "nightly-resilience",
                SUITE_RUN_LABEL: "{{workflow.uid}}",
                SCENARIO_LABEL: SCENARIO,
            },
        },
        "spec": {"workflowTemplateRef": {"name": SCENARIO}},
    }
    with WorkflowTemplate(
        name="nightly-resilience",
        labels=dict(PART_OF),
        annotations={
            "workflows.argoproj.io/title": "Nightly resilience suite",
            "workflows.argoproj.io/description": "Runs the listed faultflow scenarios one after another and fails if any of them failed.",
        },
        entrypoint="suite",
        service_account_name=SUITE.service_account,
        arguments=[
            Parameter(
                name="scenarios",
                value=json.dumps(list(scenarios)),
                description="JSON list of scenario (WorkflowTemplate) names to run, in order.",
            )
        ],
        active_deadline_seconds=NIGHTLY_SCENARIO_DEADLINE_S * max(1, len(scenarios)) + GATE_DEADLINE_S,
        **retention.scenario(),
    ) as template:
        run = Resource(
            name="run-scenario",
            action="create",
            manifest=child_manifest(child),
            set_owner_reference=True,
            success_condition="status.phase == Succeeded",
            failure_condition="status.phase in (Failed, Error)",
            inputs=[Parameter(name="scenario")],
            active_deadline_seconds=NIGHTLY_SCENARIO_DEADLINE_S,
        )
        gate = Container(
            name="gate",
            image=STEPS_IMAGE,
            command=["faultflow", "step", "suite-gate"],
            args=["--suite-run", "{{workflow.uid}}", "--scenarios", "{{workflow.parameters.scenarios}}"],
            active_deadline_seconds=GATE_DEADLINE_S,
            retry_strategy=retry_strategy(),
            security_context=RUNNER_SECURITY,
            resources=RUNNER_RESOURCES,
        )
        with Steps(name="suite", parallelism=1):
            run(
                name="scenario",
                arguments={"scenario": "{{item}}"},
                with_param="{{workflow.parameters.scenarios}}",
                continue_on=m.ContinueOn(failed=True, error=True),
            )
            gate(name="gate")  # the next step group: runs after every scenario, whatever their outcome
    return template


def nightly(scenarios: tuple[str, ...]) -> CronWorkflow:
    """The schedule: a Workflow referencing the `nightly-resilience` WorkflowTemplate."""
    with _cron(
        "nightly-resilience",
        "Nightly resilience suite",
        "Runs the listed faultflow scenarios one after another every night and fails if any of them failed.",
        NIGHTLY_SCHEDULE,
        workflow_template_ref=m.WorkflowTemplateRef(name="nightly-resilience"),
        arguments=[Parameter(name="scenarios", value=json.dumps(list(scenarios)))],
    ) as cron:
        pass
    return cron


def janitor_template() -> WorkflowTemplate:
    """The janitor as a WorkflowTemplate (the CronWorkflow references it: Argo's `templateReferencing:
    Strict` runs only Workflows that reference a WorkflowTemplate)."""
    with WorkflowTemplate(
        name="janitor",
        labels=dict(PART_OF),
        annotations={
            "workflows.argoproj.io/title": "faultflow janitor",
            "workflows.argoproj.io/description": "Reverts faults whose run TTL passed or whose workflow is gone or finished.",
        },
        entrypoint="janitor",
        service_account_name=JANITOR.service_account,
        executor=m.ExecutorConfig(service_account_name=EXECUTOR_SERVICE_ACCOUNT),
        **retention.janitor(),
    ) as template:
        Container(
            name="janitor",
            image=STEPS_IMAGE,
            command=list(JANITOR_COMMAND),
            args=list(JANITOR_ARGS),
            active_deadline_seconds=900,
            retry_strategy=retry_strategy(),
            security_context=RUNNER_SECURITY,
            resources=RUNNER_RESOURCES,
        )
    return template


def janitor() -> CronWorkflow:
    with _cron(
        "janitor",
        "faultflow janitor",
        "Every 15 minutes: reverts faults whose run TTL passed or whose workflow is gone or finished.",
        "*/15 * * * *",
        workflow_template_ref=m.WorkflowTemplateRef(name="janitor"),
    ) as cron:
        pass
    return cron
