"""Stages the network scenarios share. Every option a stage passes is checked against the real click
command (tests/workflows/test_render.py::test_every_option_passed_exists_in_the_step)."""

from __future__ import annotations

from workflows.declaration import Param, Parameter, Stage, WorkflowField
from workflows.roles import CLEANUP, NETWORK_INJECTOR, PREFLIGHT
from workflows.stages.common import ABORT_ARGS, OUTPUTS, RUN_ID

NETWORK_MUTEXES = ("faultflow-{namespace}",)
DURATION = Parameter("duration", "10m", "The fault heals itself after this, even if the workflow is stopped.")


def preflight() -> Stage:
    return Stage(
        "preflight",
        "preflight",
        role=PREFLIGHT,
        deadline_s=300,
        retry=True,
        description="Guardrails (namespace opted in, target exists), run ledger.",
        args=(
            "--fault",
            "network",
            "--run-id",
            RUN_ID,
            "--namespace",
            Param("namespace"),
            "--target",
            Param("target"),
            "--dgd-version",
            Param("dgd-version"),
            "--ttl",
            Param("ttl"),
            "--workflow-name",
            WorkflowField("name"),
            "--workflow-namespace",
            WorkflowField("namespace"),
            "--workflow-uid",
            WorkflowField("uid"),
            *ABORT_ARGS,
            "--outputs-dir",
            OUTPUTS,
        ),
    )


def inject(step: str, description: str, options: tuple) -> Stage:
    """The scenario's fault: `step` (partition-network, degrade-network) on the target, after the
    steady-state gate, with the options that say which fault; the run's identity, target, self-heal
    duration and outputs are the same for every network fault."""
    return Stage(
        step,
        step,
        role=NETWORK_INJECTOR,
        deadline_s=300,
        retry=True,
        after=("steady-state",),
        description=description,
        args=(
            "--run-id",
            RUN_ID,
            "--namespace",
            Param("namespace"),
            "--target",
            Param("target"),
            *options,
            "--duration",
            Param("duration"),
            "--outputs-dir",
            OUTPUTS,
        ),
    )


def heal(name: str, after: tuple[str, ...] = ()) -> Stage:
    return Stage(
        name,
        "heal-network",
        role=CLEANUP,
        deadline_s=600,
        retry=True,
        after=after,
        description="Deletes exactly this run's NetworkPolicies / NetworkChaos (ledger and label); no-op when healed.",
        args=("--run-id", RUN_ID, "--namespace", Param("namespace"), "--outputs-dir", OUTPUTS),
    )


def verify_partition(after: str) -> Stage:
    return Stage(
        "verify-partition",
        "verify-partition",
        role=NETWORK_INJECTOR,
        deadline_s=300,
        retry=True,
        after=(after,),
        description="The run's objects exist and select the intended pods.",
        args=("--run-id", RUN_ID, "--namespace", Param("namespace"), "--outputs-dir", OUTPUTS),
    )
