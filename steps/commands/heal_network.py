"""`faultflow step heal-network`: delete exactly this run's network objects (NetworkPolicies,
NetworkChaos, probe pods) — the ones its ledger lists, each only while it still carries the run's
label — through the same revert the janitor and `faults recover` use. No-op when already healed.
A SIGTERM mid-way leaves the rest to the janitor (every revert is idempotent).
"""

from __future__ import annotations

import click

from steps.commands._network import open_ledger
from steps.event_names import EventName
from steps.events import emit
from steps.options import run_options
from steps.run import ledger as L
from steps.run.revert import event_name, revert_run
from steps.signals import sigterm_raises

STEP = "heal-network"


@click.command(STEP)
@run_options
def command(run_id, namespace, open_run):
    """Heal this run's network faults (delete its NetworkPolicies and NetworkChaos)."""
    run = open_run()
    ledger = open_ledger(run.ledgers, namespace, run_id)
    with sigterm_raises():
        outcomes = revert_run(run.kube, run.ledgers, ledger, 60, kinds=L.CREATED_OBJECT_KINDS)
    for outcome in outcomes:  # fault_cleared per object, as cleanup-dgd and the janitor report reverts
        emit(STEP, event_name(outcome), run_id=run_id, entry=outcome.entry_id, kind=outcome.kind, action=outcome.action)
    if not outcomes:
        emit(STEP, EventName.ALREADY_CLEAN, run_id=run_id)
    run.outputs.write("reverted", str(len(outcomes)))
