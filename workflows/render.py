"""Scenario declaration → Hera WorkflowTemplate (→ YAML). The only module that knows Argo's shapes for
a scenario; everything it renders comes from `workflows.declaration` objects.

Where Argo's features come from (all exist in Argo 3.6+, see README "Argo versions"):
* the scenario's stages → one `container` template each, a `dag` "main" with `depends`;
  the background `load` stage → a `daemon` task (Argo stops it with SIGTERM when the DAG ends);
  a background stage's `ready` file → the daemon's readinessProbe (`test -f`), so its dependents
  start only once it is doing its job (Argo marks a daemon task fulfilled when its pod is Ready);
  a hold stage → a `suspend` template with a duration;
* exit stages → the `onExit` DAG "exit-handler": each runs whatever the previous one's outcome;
* every stage's outputs directory → an output artifact under the run's key prefix; the report's
  `EvidenceDir` → that prefix loaded as one input directory (a key-only artifact in the default,
  S3-compatible artifact repository). Argo cannot pass artifacts from the main DAG into an exit
  handler by reference, which is why the prefix is used;
* deadlines: every leaf template has activeDeadlineSeconds (Argo refuses it on DAG/steps
  templates), the workflow its total;
* node-pinned stages → nodeSelector on the preflight output, privileged, only their hostPath
  volumes, no service-account token (the executor has its own), never hostPID (`workflows.host_pid`:
  Argo's emissary before v4.1 would forward a signal to every process on the node).
"""

from __future__ import annotations

import json
import re

from hera.workflows import (
    DAG,
    Container,
    Counter,
    EmptyDirVolume,
    Env,
    Gauge,
    HostPathVolume,
    Label,
    NoneArchiveStrategy,
    Parameter,
    RetryStrategy,
    S3Artifact,
    Suspend,
    Task,
    WorkflowTemplate,
)
from hera.workflows import (
    models as m,
)

from steps.event_names import EVENTS_FILE_ENV
from workflows import declaration as d
from workflows import retention
from workflows.roles import EXECUTOR_SERVICE_ACCOUNT, NODE_AGENT
from workflows.stages.common import NODE_AGENT_IMAGE, STEPS_IMAGE

OUTPUTS_PATH = "/tmp/faultflow/outputs"
# Not under the outputs' /tmp/faultflow: the emissary mounts an input artifact at its path, the
# runtime creates the mount point's missing parents as root, and the steps image's user could then not
# create /tmp/faultflow/outputs (the report failed with exit 2 on real Argo).
EVIDENCE_PATH = "/tmp/faultflow-evidence"
# Argo's executor downloads an input artifact as its own user (8737 in Argo's image) with private
# directories; the report runs as the steps image's user and found nothing to read on the real
# controller. Argo's documented answer is the artifact's mode, applied recursively: readable and
# traversable by every user (files get the x bit too: harmless, nothing there is executed).
EVIDENCE_MODE = 0o755
# Key prefix of a run's evidence in the artifact repository: one sub-key per stage.
EVIDENCE_KEY = "faultflow/{{workflow.namespace}}/{{workflow.uid}}"
REPORT_FILES = ("report.json", "junit.xml", "timeline.png", "summary.md", "metrics.prom")
# Figures the report writes to metrics/<name> (steps/report_metrics.py) exported as Prometheus gauges.
REPORT_FIGURES = {
    "recovery_seconds": "Seconds from fault injection to sustained inference recovery.",
    "detection_seconds": "Seconds from fault injection to NVSentinel detection.",
    "time_to_first_failure_seconds": "Seconds from fault injection to the first failed request.",
    "availability_during_fault": "Success ratio of requests between fault injection and recovery.",
    "cleanup_disruption_seconds": "Seconds from faultflow's own workload restore until inference met the threshold again.",
    "recovered": "1 when inference recovered (or never failed) by the end of the run.",
    "run_passed": "1 when every check of the run passed.",
    "checks_failed": "Number of failed checks.",
    "requests": "Inference requests completed during the run.",
}
PART_OF = {"app.kubernetes.io/part-of": "faultflow"}
MAIN, EXIT = "main", "exit-handler"


def argument(arg: d.Arg) -> str:
    """One declared argument as the string Argo substitutes."""
    if isinstance(arg, str):
        return arg
    if isinstance(arg, d.Param):
        return f"{{{{workflow.parameters.{arg.name}}}}}"
    if isinstance(arg, d.Output):
        return f"{{{{inputs.parameters.{input_name(arg)}}}}}"
    if isinstance(arg, d.WorkflowField):
        return f"{{{{workflow.{arg.name}}}}}"
    if isinstance(arg, d.OutputsDir):
        return OUTPUTS_PATH
    if isinstance(arg, d.EvidenceDir):
        return EVIDENCE_PATH
    if isinstance(arg, d.HostPath):
        return arg.container_path
    raise TypeError(f"cannot render argument {arg!r}")


def input_name(ref: d.Output) -> str:
    return f"{ref.stage}-{ref.name}"


def mutex_name(pattern: str) -> str:
    """`faultflow-{namespace}` → `faultflow-{{workflow.parameters.namespace}}`."""
    return re.sub(r"\{([a-z0-9-]+)\}", r"{{workflow.parameters.\1}}", pattern)


def retry_strategy() -> RetryStrategy:
    # Exit 3 (infrastructure: API unreachable, 5xx) and pod errors are worth another try; 1 (a check
    # failed) and 2 (bad input) are verdicts. Every step is idempotent, so a retry is safe.
    return RetryStrategy(
        limit=d.RETRY.limit,
        retry_policy="Always",
        expression='lastRetry.status == "Error" || asInt(lastRetry.exitCode) == 3',
        backoff=m.Backoff(duration=f"{d.RETRY.backoff_s}s", factor=d.RETRY.factor, max_duration=f"{d.RETRY.max_backoff_s}s"),
    )


def _output_inputs(stage: d.Stage) -> list[Parameter]:
    refs = sorted({input_name(r) for r in stage.references() if isinstance(r, d.Output)})
    return [Parameter(name=name) for name in refs]


def _security(stage: d.Stage) -> m.SecurityContext:
    if stage.privileged:
        # Writing /dev/kmsg and the node's toggle needs root and the host's devices. The image itself
        # stays read-only (issue 15 item 9): the step writes only its host paths and /tmp (an emptyDir).
        return m.SecurityContext(privileged=True, run_as_user=0, read_only_root_filesystem=True)
    return m.SecurityContext(run_as_non_root=True, allow_privilege_escalation=False, capabilities=m.Capabilities(drop=["ALL"]))


def _stage_artifacts(stage: d.Stage) -> list:
    return [S3Artifact(name="outputs", path=OUTPUTS_PATH, key=f"{EVIDENCE_KEY}/{stage.name}", archive=NoneArchiveStrategy(), optional=True)]


def _report_extras(stage: d.Stage, scenario: d.Scenario) -> dict:
    """The report: evidence in, report files out as artifacts, figures as output parameters and gauges."""
    if stage.step != "report":
        return {}
    labels = [Label(key="scenario", value=scenario.name)]
    return {
        "extra_inputs": [
            S3Artifact(name="evidence", path=EVIDENCE_PATH, key=EVIDENCE_KEY, optional=True, mode=EVIDENCE_MODE, recurse_mode=True)
        ],
        "extra_artifacts": [
            m.Artifact(
                name=f.replace(".", "-"), path=f"{OUTPUTS_PATH}/{f}", archive=m.ArchiveStrategy(none=m.NoneStrategy()), optional=True
            )
            for f in REPORT_FILES
        ],
        "parameters": [
            Parameter(name=f.replace("_", "-"), value_from=m.ValueFrom(path=f"{OUTPUTS_PATH}/metrics/{f}", default="NaN"))
            for f in REPORT_FIGURES
        ],
        "metrics": [
            Gauge(
                name=f"faultflow_{f}", help=text, labels=labels, realtime=False, value=f"{{{{outputs.parameters.{f.replace('_', '-')}}}}}"
            )
            for f, text in REPORT_FIGURES.items()
        ],
    }


def pinned_to_node(node: str) -> m.Affinity:
    """Onto the node of that name, as the DaemonSet controller pins its pods: by the Node object's
    name (`matchFields metadata.name`), not by the `kubernetes.io/hostname` label, which differs from
    the name on many clusters (a cloud's hostname, a renamed node) and then matches no node."""
    term = m.NodeSelectorTerm(match_fields=[m.NodeSelectorRequirement(key="metadata.name", operator="In", values=[node])])
    return m.Affinity(
        node_affinity=m.NodeAffinity(required_during_scheduling_ignored_during_execution=m.NodeSelector(node_selector_terms=[term]))
    )


def image(stage: d.Stage) -> str:
    """The node agent's stages (inject-xid, `shim on`: privileged, on the node) run the node-agent image,
    which holds only the node-side commands and no cluster client (issue 15 item 9); every other
    stage the steps image."""
    return NODE_AGENT_IMAGE if stage.role is NODE_AGENT else STEPS_IMAGE


def container(stage: d.Stage, scenario: d.Scenario) -> Container | Suspend:
    if stage.hold is not None:
        return Suspend(name=stage.name, duration=argument(stage.hold), active_deadline_seconds=stage.deadline_s)
    extras = _report_extras(stage, scenario)
    outputs = [Parameter(name=o, value_from=m.ValueFrom(path=f"{OUTPUTS_PATH}/{o}")) for o in stage.outputs]
    outputs += extras.get("parameters", [])
    kwargs: dict = {}
    if stage.pinned_to is not None:
        kwargs.update(
            affinity=pinned_to_node(argument(stage.pinned_to)),
            tolerations=[m.Toleration(key=t.key, operator="Exists", effect=t.effect) for t in d.NODE_TOLERATIONS],
            volumes=[
                HostPathVolume(name=f"host-{i}", path=h.host_path, mount_path=h.container_path, type=h.host_path_type or None)
                for i, h in enumerate(p for p in stage.host_paths if p.mount)
                if h.unless is None
            ]
            # The outputs directory under a read-only root (`_security`).
            + ([EmptyDirVolume(name="tmp", mount_path="/tmp")] if stage.privileged else []),
        )
        patch = conditional_mounts(stage)
        if patch:
            kwargs["pod_spec_patch"] = patch
    if stage.retry:
        kwargs["retry_strategy"] = retry_strategy()
    if stage.background:
        kwargs["daemon"] = True
    if stage.ready is not None:
        kwargs["readiness_probe"] = m.Probe(
            exec=m.ExecAction(command=["test", "-f", f"{OUTPUTS_PATH}/{stage.ready}"]), period_seconds=1, failure_threshold=1
        )
    return Container(
        name=stage.name,
        image=image(stage),
        command=list(stage.command),
        args=[argument(a) for a in stage.args],
        env=[Env(name=EVENTS_FILE_ENV, value=f"{OUTPUTS_PATH}/{d.EVENTS_FILE_NAME}")],
        inputs=_output_inputs(stage) + extras.get("extra_inputs", []),
        outputs=outputs + _stage_artifacts(stage) + extras.get("extra_artifacts", []),
        metrics=extras.get("metrics") or None,
        service_account_name=stage.role.service_account,
        automount_service_account_token=None if stage.role.token else False,
        security_context=_security(stage),
        active_deadline_seconds=stage.deadline_s,
        resources=m.ResourceRequirements(requests={"cpu": "50m", "memory": "128Mi"}, limits={"memory": "1Gi"}),
        annotations={"faultflow.dev/description": stage.description} if stage.description else None,
        **kwargs,
    )


def conditional_mounts(stage: d.Stage) -> str | None:
    """A `podSpecPatch` expression adding the host paths mounted `unless` an earlier output has a value
    (NVSentinel's metadata directory only when NVSentinel is expected to act), read-only. The only
    podSpecPatch faultflow renders; it adds volumes and mounts, nothing else (`workflows.host_pid`)."""
    mounts = [p for p in stage.host_paths if p.mount]
    conditional = [(i, h) for i, h in enumerate(mounts) if h.unless is not None]
    if not conditional:
        return None
    conditions = {h.unless for _, h in conditional if h.unless is not None}
    if len(conditions) != 1:
        raise ValueError(f"stage {stage.name}: conditional mounts on more than one condition")
    ((ref, value),) = conditions
    patch = {
        "volumes": [{"name": f"host-{i}", "hostPath": {"path": h.host_path, "type": h.host_path_type}} for i, h in conditional],
        "containers": [
            {
                "name": "main",
                "volumeMounts": [{"name": f"host-{i}", "mountPath": h.container_path, "readOnly": True} for i, h in conditional],
            }
        ],
    }
    text = json.dumps(patch, separators=(",", ":"))
    # Argo's template tags end at the first "}}": keep the JSON's closing braces apart.
    while "}}" in text:
        text = text.replace("}}", "} }")
    if "'" in text or "{{" in text:
        raise ValueError(f"stage {stage.name}: a host path that cannot be quoted in an Argo expression")
    return f"{{{{=inputs.parameters['{input_name(ref)}'] == '{value}' ? '{{}}' : '{text}'}}}}"


def _task(stage: d.Stage, template, depends: str | None) -> Task:
    arguments = {
        input_name(r): f"{{{{tasks.{r.stage}.outputs.parameters.{r.name}}}}}" for r in stage.references() if isinstance(r, d.Output)
    }
    return Task(name=stage.name, template=template, arguments=dict(sorted(arguments.items())) or None, depends=depends)


def scenario_template(scenario: d.Scenario) -> WorkflowTemplate:
    scenario.check()
    exit_deadline = sum(s.deadline_s for s in scenario.exit_stages)
    with WorkflowTemplate(
        name=scenario.name,
        labels={**PART_OF, "faultflow.dev/scenario": scenario.name},
        annotations={"workflows.argoproj.io/title": scenario.title, "workflows.argoproj.io/description": scenario.description},
        entrypoint=MAIN,
        on_exit=EXIT,
        arguments=[
            Parameter(name=p.name, value=p.default, description=p.description, enum=list(p.enum) or None) for p in scenario.parameters
        ],
        active_deadline_seconds=scenario.deadline_s + exit_deadline,
        executor=m.ExecutorConfig(service_account_name=EXECUTOR_SERVICE_ACCOUNT),
        synchronization=m.Synchronization(mutexes=[m.Mutex(name=mutex_name(x)) for x in scenario.mutexes]),
        **retention.scenario(),
        workflow_metadata=m.WorkflowMetadata(labels={**PART_OF, "faultflow.dev/scenario": scenario.name}),
        metrics=[
            Counter(
                name="faultflow_scenario_runs_total",
                help="Scenario runs by outcome.",
                labels=[Label(key="scenario", value=scenario.name), Label(key="status", value="{{workflow.status}}")],
                value="1",
            ),
            Gauge(
                name="faultflow_scenario_duration_seconds",
                help="Wall time of the scenario run.",
                realtime=False,
                labels=[Label(key="scenario", value=scenario.name), Label(key="status", value="{{workflow.status}}")],
                value="{{workflow.duration}}",
            ),
        ],
    ) as template:
        templates = {s.name: container(s, scenario) for s in (*scenario.stages, *scenario.exit_stages)}
        with DAG(name=MAIN):
            for stage in scenario.stages:
                _task(stage, templates[stage.name], " && ".join(stage.after) or None)
        with DAG(name=EXIT):
            previous = None
            for stage in scenario.exit_stages:
                # Each exit stage runs whatever happened to the one before it.
                depends = f"{previous}.Succeeded || {previous}.Failed || {previous}.Errored" if previous else None
                _task(stage, templates[stage.name], depends)
                previous = stage.name
    return template
