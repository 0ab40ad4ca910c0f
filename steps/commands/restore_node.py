"""`faultflow step restore-node`: undo what the run did to its node — only with --restore-node.

Uncordons only a node the run found schedulable (preflight recorded that) and only the node in this
run's own ledger; other runs' nodes are never looked at.
"""

from __future__ import annotations

import click

from steps.errors import BadInput
from steps.event_names import EventName
from steps.events import emit
from steps.options import run_options
from steps.run import ledger as L
from steps.run.revert import event_name, revert_node

STEP = "restore-node"


@click.command(STEP)
@run_options(outputs=False)
@click.option("--restore-node/--no-restore-node", default=False, show_default=True, help="Without it the step does nothing.")
def command(run_id, namespace, open_run, restore_node):
    """Uncordon the run's node if the run found it schedulable (only with --restore-node)."""
    if not restore_node:
        emit(STEP, EventName.SKIPPED, run_id=run_id, reason="--restore-node not given")
        return
    run = open_run()
    ledger = run.ledgers.require(namespace, run_id)
    entries = [e for e in ledger.active() if e.kind == L.NODE_STATE]
    if not entries:
        raise BadInput(f"run {run_id} recorded no node state (preflight without --restore-node)")
    for entry in entries:
        outcome = revert_node(run.kube, entry)
        run.ledgers.set_state(namespace, run_id, entry.id, L.REVERTED)
        emit(STEP, event_name(outcome), run_id=run_id, node=entry.target["node"], action=outcome.action)
