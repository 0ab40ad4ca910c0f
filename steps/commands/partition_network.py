"""`faultflow step partition-network`: cut one set of a DGD's pods off from another with NetworkPolicies.

Which traffic is cut, and why nothing else is, is explained in `steps.network.policies`. Order: build
every policy, check none collides with another policy on the same pods (policies are additive, so a
second allow-list on the same pods would widen it — ours would open what theirs closed, or theirs
would reopen what ours cut), let the API server validate each (dry run), then per policy: ledger
entry, create, applied. Running it again creates nothing new. SIGTERM deletes what this invocation
created. `--duration`: every entry expires then, and the janitor (a CronWorkflow) heals expired
entries even while the workflow still runs or after it was terminated.
"""

from __future__ import annotations

import click

from steps.commands._network import (
    check_custom,
    cluster_addresses,
    create_all,
    groups_for,
    open_ledger,
    platform_options,
    require_dgd,
    target_options,
)
from steps.commands._network import (
    platform as platform_of,
)
from steps.errors import BadInput
from steps.event_names import EventName
from steps.events import emit
from steps.network.objects import existing, validate_on_server
from steps.network.policies import DIRECTIONS, PARTITIONS, Partition, build_policies
from steps.network.targets import check_no_other_policy
from steps.options import K8sName
from steps.workload.kinds import resolve

STEP = "partition-network"


@click.command(STEP)
@target_options
@click.option("--partition", "kind", required=True, type=click.Choice(list(PARTITIONS)), help="Which pods are cut from which.")
@click.option(
    "--direction",
    default="both",
    show_default=True,
    type=click.Choice(DIRECTIONS),
    help="egress: the pods cannot open connections to the peers; ingress: the peers cannot open connections to them.",
)
@click.option("--source-selector", default=None, help="custom: label selector of the pods that are cut off.")
@click.option("--peer-selector", default=None, help="custom: label selector of the pods they are cut from.")
@click.option("--peer-namespace", default=None, type=K8sName(label=True), help="custom: namespace of the peers (default: --namespace).")
@click.option("--include-etcd", is_flag=True, help="worker-nats/frontend-nats: cut etcd as well.")
@click.option(
    "--pod-cidr",
    "pod_cidrs",
    multiple=True,
    help="The cluster's pod network(s), repeatable or comma-separated (default, or \"\": the nodes' spec.podCIDRs).",
)
@platform_options
def command(
    run_id,
    namespace,
    open_run,
    target,
    dgd_version,
    duration,
    dry_run,
    kind,
    direction,
    source_selector,
    peer_selector,
    peer_namespace,
    include_etcd,
    pod_cidrs,
    nats_selector,
    nats_namespace,
    etcd_selector,
    etcd_namespace,
):
    """Partition a DGD's pods from their peers (NetworkPolicies selected by stable operator labels)."""
    check_custom(kind, source_selector, kind, peer_selector, peer_namespace)
    if include_etcd and not kind.endswith("-nats"):
        raise BadInput("--include-etcd goes with worker-nats or frontend-nats")
    require_dgd(target)
    platform = platform_of(nats_selector, nats_namespace, etcd_selector, etcd_namespace)
    run = open_run()
    kube, store = run.kube, run.ledgers
    ledger = None if dry_run else open_ledger(store, namespace, run_id)
    _, obj = resolve(kube, namespace, "dgd", target[1], dgd_version)
    source_role, peer_role = PARTITIONS[kind]
    blocked = groups_for(obj, peer_role, namespace, peer_selector, peer_namespace, platform)
    if include_etcd:
        blocked += groups_for(obj, "etcd", namespace, None, None, platform)
    partition = Partition(kind, direction, groups_for(obj, source_role, namespace, source_selector, None, platform), blocked)
    policies = build_policies(run_id, partition, cluster_addresses(kube, pod_cidrs))
    present = existing(kube, policies, run_id)
    check_no_other_policy(kube, policies)
    validate_on_server(kube, policies, present)
    names = [p["metadata"]["name"] for p in policies]
    recorded = {
        "partition": kind,
        "direction": direction,
        "blocked": [{"namespace": g.namespace, "selector": g.selector_string()} for g in partition.blocked],
    }
    expires_ms = create_all(STEP, "network-partition", kube, store, ledger, policies, present, duration, recorded)
    if expires_ms is None:
        return
    emit(
        STEP,
        EventName.FAULT_INJECTED,
        run_id=run_id,
        kind="network-partition",
        partition=kind,
        direction=direction,
        policies=names,
        already=len(present) == len(policies),
        expires_ms=expires_ms,
    )
    run.outputs.write("policies", ",".join(names))
    run.outputs.write("expires-ms", str(expires_ms))
