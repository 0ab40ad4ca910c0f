"""`faultflow faults list | recover`: every active fault in the cluster, from the run ledgers in
faultflow's namespace (FAULTFLOW_NAMESPACE, default `faultflow`; ledger-labelled ConfigMaps anywhere
else are not ledgers), and the workloads whose run's ledger is gone but which still carry our shim
and its record (`steps.run.orphans`: opted-in namespaces only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from steps.errors import BadInput
from steps.event_names import EventName
from steps.events import emit
from steps.guard import halt
from steps.installation_names import HALT_NAME
from steps.kube.client import connect
from steps.options import Duration, K8sName, RunId, common_cluster_options
from steps.run import ledger as L
from steps.run import orphans


def _iso(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ms else "-"


def _target(entry: L.Entry) -> str:
    if not isinstance(entry.target, dict):
        return "?"  # an unreadable entry is shown, not fatal for the listing
    if "node" in entry.target:
        return f"node/{entry.target['node']}"
    return f"{entry.target.get('plural')}/{entry.target.get('namespace')}/{entry.target.get('name')}"


def rows(ledgers: list[L.Ledger]) -> list[dict]:
    out = []
    for ledger in ledgers:
        for entry in ledger.active():
            if entry.kind == L.NODE_STATE:
                continue  # a record of the node's state, not a fault
            expires = entry.data.get("expires_ms") or ledger.run.expires_ms
            out.append(
                {
                    "run": ledger.run.run_id,
                    "kind": entry.kind,
                    "target": _target(entry),
                    "injected_at": _iso(entry.created_ms),
                    "expires_at": _iso(expires),
                    "state": entry.state,
                    "namespace": ledger.run.namespace,
                }
            )
    return out


def halt_rows(current) -> list[dict]:
    """The cluster-wide halt, listed first: while it is in force no run starts (`faultflow halt`)."""
    if current is None:
        return []
    return [
        {
            "run": "-",
            "kind": "halt",
            "target": f"configmap/{current.namespace}/{HALT_NAME}",
            "injected_at": current.set_at or "-",
            "expires_at": "-",
            "state": f"in force{' by ' + current.set_by if current.set_by else ''}: {current.reason or 'no reason given'}",
            "namespace": current.namespace,
        }
    ]


def orphan_rows(found: list[orphans.Orphan]) -> list[dict]:
    """Workloads still carrying a run's shim whose ledger is gone: `faults recover RUN` undoes them."""
    return [
        {
            "run": orphan.run_id,
            "kind": L.WORKLOAD_SHIM,
            "target": f"{orphan.ref.plural}/{orphan.ref.namespace}/{orphan.ref.name}",
            "injected_at": "-",
            "expires_at": "-",
            "state": "orphan (ledger gone)",
            "namespace": orphan.ref.namespace,
        }
        for orphan in found
    ]


@click.command("list")
@click.option("--namespace", default=None, type=K8sName(label=True), help="Only this namespace (default: all).")
@click.option("--json", "as_json", is_flag=True)
@common_cluster_options
def list_command(namespace, as_json, kubeconfig, context):
    """Show every active fault: run, kind, target, injected at, expires at, state."""
    kube = connect(kubeconfig, context)
    store = L.LedgerStore(kube)
    table = halt_rows(halt.read(kube, store.home)) + rows(store.all(namespace)) + orphan_rows(orphans.find(kube, store.home, namespace))
    if as_json:
        click.echo(json.dumps(table, indent=1))
        return
    columns = ("run", "kind", "target", "injected_at", "expires_at", "state")
    cells = [tuple(c.upper() for c in columns)] + [tuple(str(r[c]) for c in columns) for r in table]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


@click.command("recover")
@click.argument("run_id", required=False, type=RunId())
@click.option("--all", "all_runs", is_flag=True, help="Recover every run with an active fault.")
@click.option("--namespace", default=None, type=K8sName(label=True))
@click.option("--timeout", default="5m", show_default=True, type=Duration())
@click.option("--node-agent-image", default=None, help="Image of toggle-off pods (default: the installed node-agent image).")
@click.option("--toggle-dir", default=None, help="Node toggle directory (default: the installed one).")
@click.option(
    "--uncordon",
    is_flag=True,
    help="Also uncordon the node of a run started with --restore-node that found it "
    "schedulable (a person's decision: without it the cordon stays).",
)
@common_cluster_options
def recover_command(run_id, all_runs, namespace, timeout, node_agent_image, toggle_dir, uncordon, kubeconfig, context):
    """Revert one run now (or --all), exactly as the janitor would."""
    from steps.commands.janitor import sweep

    if bool(run_id) == all_runs:
        raise BadInput("give a RUN id or --all (not both)")
    kube = connect(kubeconfig, context)
    store = L.LedgerStore(kube)
    known = any(ledger.run.run_id == run_id for ledger in store.all(namespace))
    if run_id and not known and not orphans.find(kube, store.home, namespace, run_id):
        raise BadInput(f"no ledger for run {run_id}, and no workload in an opted-in namespace carries its shim")
    runs, entries = sweep(
        kube,
        namespace,
        timeout,
        node_agent_image=node_agent_image,
        only_run=run_id,
        force=True,
        step="faults-recover",
        toggle_dir=toggle_dir,
        include_node=None if uncordon else False,
    )
    emit("faults-recover", EventName.FAULTS_RECOVERED, runs=runs, entries=entries)


@click.group("faults")
def group() -> None:
    """Active faults in the cluster (from the run ledgers) and how to revert them now."""


group.add_command(list_command)
group.add_command(recover_command)
