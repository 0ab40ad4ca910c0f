"""`faultflow step cleanup-dgd`: restore the workload exactly from the ledger, switch the toggle off.

Restoring takes away only what the ledger says was added (computed from the live object, written
with a resourceVersion guard), so a replica change by the planner meanwhile survives. No-op when
already clean. A SIGTERM mid-way leaves the entries not yet reverted for the janitor: reverting is
idempotent, so a later run finishes the job.
"""

from __future__ import annotations

import click

from steps.event_names import EventName
from steps.events import emit
from steps.options import Duration, run_options
from steps.run import ledger as L
from steps.run.revert import event_name, revert_run
from steps.signals import sigterm_raises

STEP = "cleanup-dgd"


@click.command(STEP)
@run_options
@click.option("--toggle-off/--no-toggle-off", default=True, show_default=True, help="Also switch the node toggle off.")
@click.option("--steps-image", default=None, help="Image for the toggle-off pod (default: the one preflight recorded).")
@click.option("--timeout", default="5m", show_default=True, type=Duration())
def command(run_id, namespace, open_run, toggle_off, steps_image, timeout):
    """Restore the DGD (or Deployment/StatefulSet) from the ledger; switch the node toggle off."""
    run = open_run()
    ledger = run.ledgers.require(namespace, run_id)
    kinds = (L.WORKLOAD_SHIM, L.NODE_TOGGLE) if toggle_off else (L.WORKLOAD_SHIM,)
    with sigterm_raises():
        outcomes = revert_run(run.kube, run.ledgers, ledger, timeout, kinds=kinds, steps_image=steps_image, include_node=False)
    for outcome in outcomes:
        emit(STEP, event_name(outcome), run_id=run_id, entry=outcome.entry_id, kind=outcome.kind, action=outcome.action)
    if not outcomes:
        emit(STEP, EventName.ALREADY_CLEAN, run_id=run_id)
    run.outputs.write("reverted", str(len(outcomes)))
