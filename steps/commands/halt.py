"""`faultflow halt [--reason TEXT] | --clear | --status`: the cluster-wide halt (`steps.guard.halt`).

`halt` sets the switch first (so no new run starts while the running ones are being stopped), then
stops every running faultflow Workflow in faultflow's namespace the way `argo stop` does: their exit
handlers revert their faults. `--clear` lifts it; `--status` shows it (exit 0 either way; `--json`).
Who may do what: README "Who can do what" — setting needs create on ConfigMaps and patch on
Workflows in faultflow's namespace, lifting needs delete on ConfigMaps there, which no faultflow
ServiceAccount has.
"""

from __future__ import annotations

import json

import click

from steps.errors import BadInput
from steps.event_names import EventName
from steps.events import emit
from steps.options import common_cluster_options

STEP = "halt"
MAX_REASON = 1024


@click.command(STEP)
@click.option("--reason", default="", help="Why (shown by --status, preflight's refusal, the janitor and `faults list`).")
@click.option("--clear", is_flag=True, help="Lift the halt: runs may start again.")
@click.option("--status", is_flag=True, help="Show whether a halt is in force.")
@click.option("--json", "as_json", is_flag=True, help="--status as JSON.")
@common_cluster_options
def command(reason, clear, status, as_json, kubeconfig, context):
    """Stop every running faultflow Workflow and refuse new runs until `--clear`."""
    if clear and status:
        raise BadInput("give --clear or --status, not both")
    if (clear or status) and reason:
        raise BadInput("--reason goes with setting a halt, not with --clear or --status")
    if as_json and not status:
        raise BadInput("--json goes with --status")
    if len(reason) > MAX_REASON or any(ch in reason for ch in "\r\n\0"):
        raise BadInput(f"--reason must be one line of at most {MAX_REASON} characters")
    from steps.guard import halt
    from steps.kube.client import connect
    from steps.run import install

    kube = connect(kubeconfig, context)
    home = install.home_namespace()
    if status:
        current = halt.read(kube, home)
        if as_json:
            click.echo(json.dumps(None if current is None else {**current.__dict__, "in_force": True}))
        else:
            click.echo(current.describe() if current is not None else "no halt in force")
        return
    if clear:
        lifted = halt.clear(kube, home)
        emit(STEP, EventName.HALT_CLEARED, namespace=home, was_in_force=lifted)
        return
    current = halt.set_halt(kube, home, reason)
    results = halt.stop_all(kube, home, f"faultflow halt: {reason or 'no reason given'}")
    for result in results:
        emit(STEP, EventName.WORKFLOW_STOPPED, workflow=result.name, stopped=result.stopped, why=result.why or None)
    emit(
        STEP,
        EventName.HALT_SET,
        namespace=home,
        reason=current.reason,
        set_by=current.set_by,
        stopped=[r.name for r in results if r.stopped],
    )
