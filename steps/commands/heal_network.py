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
from steps.kube.client import connect
from steps.options import K8sName, RunId, common_cluster_options
from steps.outputs import Outputs
from steps.run import ledger as L
from steps.run.revert import event_name, revert_run
from steps.signals import sigterm_raises

STEP = "heal-network"


@click.command(STEP)
@click.option("--run-id", required=True, type=RunId())
@click.option("--namespace", required=True, type=K8sName(label=True))
@click.option("--outputs-dir", default=None)
@common_cluster_options
def command(run_id, namespace, outputs_dir, kubeconfig, context):
    """Heal this run's network faults (delete its NetworkPolicies and NetworkChaos)."""
    outputs = Outputs(outputs_dir)
    outputs.check()
    kube = connect(kubeconfig, context)
    store = L.LedgerStore(kube)
    ledger = open_ledger(store, namespace, run_id)
    with sigterm_raises():
        outcomes = revert_run(kube, store, ledger, 60, kinds=L.CREATED_OBJECT_KINDS)
    for outcome in outcomes:  # fault_cleared per object, as cleanup-dgd and the janitor report reverts
        emit(STEP, event_name(outcome), run_id=run_id, entry=outcome.entry_id, kind=outcome.kind, action=outcome.action)
    if not outcomes:
        emit(STEP, EventName.ALREADY_CLEAN, run_id=run_id)
    outputs.write("reverted", str(len(outcomes)))
