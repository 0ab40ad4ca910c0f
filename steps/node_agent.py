"""The node agent's `faultflow`: the entry point of the node-agent image (images/node-agent), which the
privileged node pod (`faultflow step inject-xid`, `faultflow shim on`) and the toggle-off pod
(`faultflow shim off`) run.

The same command lines as the steps image's `faultflow` (steps.cli), so the rendered templates, the
toggle-off pod and the admission policy name them alike; only the node-side commands are offered.
They write /dev/kmsg and the node's toggle with the standard library and click alone: nothing they
import reaches the Kubernetes client, the HTTP client or the report's plotting (import-linter's
`node-agent-narrow` contract), and the image holds exactly the modules they import
(tests/steps/test_node_agent.py compares them with the Dockerfile's COPY lines).
"""

from __future__ import annotations

import click

from steps.cli import STEP_COMMANDS, TOP_COMMANDS, LazyGroup, run_group

# The node-side commands, as steps.cli names them (one module each).
NODE_COMMANDS = {"shim": TOP_COMMANDS["shim"]}
NODE_STEPS = {"inject-xid": STEP_COMMANDS["inject-xid"]}


@click.group(cls=LazyGroup, lazy=NODE_COMMANDS)
def main() -> None:
    """faultflow's node agent: the node toggle and the kernel log line (no cluster access)."""


@main.group(cls=LazyGroup, lazy=NODE_STEPS)
def step() -> None:
    """The step commands that run on the node."""


def run(argv: list[str] | None = None) -> None:
    """The node-agent image's `faultflow` (images/node-agent/faultflow)."""
    run_group(main, argv)
