"""Stages the network scenarios share. The network steps are being built on branch `network`
(issue #5): option names follow the issue text and are checked against the real click commands when
the branches meet (tests/workflows/test_declaration.py skips nothing: a missing command fails it)."""

from __future__ import annotations

from workflows.declaration import Param, Parameter, Stage, WorkflowField
from workflows.shared import CLEANUP, NETWORK_INJECTOR, OUTPUTS, PREFLIGHT, RUN_ID

NETWORK_MUTEXES = ("faultflow-{namespace}",)
DURATION = Parameter("duration", "10m", "The fault heals itself after this, even if the workflow is stopped.")


def preflight() -> Stage:
    return Stage(
        "preflight", "preflight", role=PREFLIGHT, deadline_s=300, retry=True,
        description="Guardrails (namespace opted in, target exists), run ledger.",
        args=("--fault", "network", "--run-id", RUN_ID, "--namespace", Param("namespace"), "--target", Param("target"),
              "--dgd-version", Param("dgd-version"), "--ttl", Param("ttl"),
              "--workflow-name", WorkflowField("name"), "--workflow-namespace", WorkflowField("namespace"),
              "--workflow-uid", WorkflowField("uid"), "--outputs-dir", OUTPUTS),
    )


def heal(name: str, after: tuple[str, ...] = ()) -> Stage:
    return Stage(
        name, "heal-network", role=CLEANUP, deadline_s=600, retry=True, after=after,
        description="Deletes exactly this run's NetworkPolicies / NetworkChaos (ledger and label); no-op when healed.",
        args=("--run-id", RUN_ID, "--namespace", Param("namespace"), "--outputs-dir", OUTPUTS),
    )


def verify_partition(after: str) -> Stage:
    return Stage(
        "verify-partition", "verify-partition", role=NETWORK_INJECTOR, deadline_s=300, retry=True, after=(after,),
        description="The run's objects exist and select the intended pods.",
        args=("--run-id", RUN_ID, "--namespace", Param("namespace"), "--outputs-dir", OUTPUTS),
    )
