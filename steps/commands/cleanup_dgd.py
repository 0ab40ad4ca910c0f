"""`faultflow step cleanup-dgd`: restore the workload exactly from the ledger, switch the toggle off.

Restoring takes away only what the ledger says was added (computed from the live object, written
with a resourceVersion guard), so a replica change by the planner meanwhile survives. No-op when
already clean. A SIGTERM mid-way leaves the entries not yet reverted for the janitor: reverting is
idempotent, so a later run finishes the job.
"""

from __future__ import annotations

import click

from steps.errors import BadInput
from steps.event_names import EventName
from steps.events import emit
from steps.kube.client import Ref
from steps.options import Duration, run_options
from steps.run import ledger as L
from steps.run.revert import NodeConfig, event_name, revert_run
from steps.signals import sigterm_raises
from steps.workload.kinds import worker_pod_selector
from steps.workload.reach import FAULT_REACHED, reached, workers_on_node

STEP = "cleanup-dgd"


@click.command(STEP)
@run_options
@click.option("--toggle-off/--no-toggle-off", default=True, show_default=True, help="Also switch the node toggle off.")
@click.option(
    "--restore-workload/--no-restore-workload",
    default=True,
    show_default=True,
    help="Restore the workload (--no-restore-workload: only the toggle, so recovery is measured before our own rollout).",
)
@click.option(
    "--node-agent-image",
    default=None,
    help="Image for the toggle-off pod (default: the installed node-agent image, ConfigMap faultflow-config).",
)
@click.option("--toggle-dir", default=None, help="Node toggle directory (default: the installed one, ConfigMap faultflow-config).")
@click.option("--timeout", default="5m", show_default=True, type=Duration())
@click.option(
    "--expect-cuda-faults",
    is_flag=True,
    help="Before restoring, report whether the workers on the run's node logged the shim injecting the XID (event fault_reached_workload).",
)
def command(run_id, namespace, open_run, toggle_off, restore_workload, node_agent_image, toggle_dir, timeout, expect_cuda_faults):
    """Restore the DGD (or Deployment/StatefulSet) from the ledger; switch the node toggle off."""
    if not (toggle_off or restore_workload):
        raise BadInput("--no-toggle-off with --no-restore-workload leaves nothing to do")
    run = open_run()
    kube, store = run.kube, run.ledgers
    ledger = store.require(namespace, run_id)
    if expect_cuda_faults:
        _report_reach(kube, ledger)
    # The NVML consumers go back with the workload: a restarted device plugin re-advertises the GPU.
    restored = (L.WORKLOAD_SHIM, L.NVML_CONSUMER) if restore_workload else ()
    kinds = restored + ((L.NODE_TOGGLE,) if toggle_off else ())
    toggles = toggle_off and any(e.kind == L.NODE_TOGGLE for e in ledger.active())
    node_config = NodeConfig.installed(kube, store.home, node_agent_image, toggle_dir) if toggles else None
    with sigterm_raises():
        outcomes = revert_run(kube, store, ledger, timeout, kinds=kinds, node_config=node_config, include_node=False)
    for outcome in outcomes:
        emit(STEP, event_name(outcome), run_id=run_id, entry=outcome.entry_id, kind=outcome.kind, action=outcome.action)
    if not outcomes:
        emit(STEP, EventName.ALREADY_CLEAN, run_id=run_id)
    run.outputs.write("reverted", str(len(outcomes)))


def _report_reach(kube, ledger: L.Ledger) -> None:
    """The workers on the run's node: did their logs show the shim injecting the run's XID? (Read
    before the restore rolls them.)"""
    run = ledger.run
    workloads = [e for e in ledger.active() if e.kind == L.WORKLOAD_SHIM and isinstance(e.target, dict)]
    if not workloads or not run.node or run.xid is None:
        emit(STEP, FAULT_REACHED, run_id=run.run_id, node=run.node, xid=run.xid, workers=0, read=[], reached=[])
        return
    obj = kube.get(Ref.from_dict(workloads[0].target))
    pods = workers_on_node(kube, run.namespace, worker_pod_selector(obj), run.node)
    hits, read = reached(kube, run.namespace, pods, run.xid, workloads[0].data.get("container"))
    emit(STEP, FAULT_REACHED, run_id=run.run_id, node=run.node, xid=run.xid, workers=len(pods), read=read, reached=hits)
