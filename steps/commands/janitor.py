"""`faultflow step janitor`: revert every run whose TTL passed or whose workflow is gone or finished,
and, in live runs, every entry whose own end passed (a network fault's `--duration`).

Reads ledgers only in faultflow's own namespace (`steps.run.install`), and reverts only what still
carries the run's mark in an opted-in namespace (`steps.run.revert`); never uncordons a node.

Safe any time, also next to live runs: a run inside its TTL whose workflow still runs is never
touched, and every revert is idempotent and resourceVersion-guarded (two janitors at once do the
same thing twice, which is the same as once). `faultflow faults recover` calls the same code.
"""

from __future__ import annotations

import click

from steps.event_names import EventName
from steps.events import emit
from steps.kube.client import connect
from steps.options import Duration, K8sName, common_cluster_options
from steps.run.janitor import (
    STEP,
    sweep,
)


@click.command(STEP)
@click.option("--namespace", default=None, type=K8sName(label=True), help="Only runs of this namespace (default: all).")
@click.option("--timeout", default="5m", show_default=True, type=Duration(), help="Per toggle-off pod.")
@click.option(
    "--node-agent-image",
    default=None,
    help="Image of toggle-off pods, an operator's override (default: the installed node-agent image, ConfigMap faultflow-config; never a ledger's).",
)
@click.option("--toggle-dir", default=None, help="Node toggle directory (default: the installed one, ConfigMap faultflow-config).")
@click.option("--dry-run", is_flag=True)
@common_cluster_options
def command(namespace, timeout, node_agent_image, toggle_dir, dry_run, kubeconfig, context):
    """Revert every orphaned fault (TTL passed, workflow gone or finished)."""
    from steps.guard import halt
    from steps.run import install

    kube = connect(kubeconfig, context)
    # A halt changes nothing the janitor does (reverting is what a halt wants), but whoever reads its
    # output should know one is in force.
    current = halt.read(kube, install.home_namespace())
    if current is not None:
        click.echo(f"faultflow janitor: {current.describe()}", err=True)
    runs, entries = sweep(kube, namespace, timeout, dry_run, node_agent_image, toggle_dir=toggle_dir)
    emit(STEP, EventName.JANITOR_DONE, runs=runs, entries=entries, dry_run=dry_run, halt=current.describe() if current else None)
