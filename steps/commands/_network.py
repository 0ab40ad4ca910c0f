"""What the network steps share: their common options, turning roles into pod groups, the cluster's
addresses, and undoing a step's own partial change on SIGTERM."""

from __future__ import annotations

import click

from steps.errors import BadInput
from steps.event_names import EventName
from steps.events import emit
from steps.kube.client import Kube, Ref
from steps.network.objects import create_recorded, undo
from steps.network.policies import (
    ClusterAddresses,
    api_server_addresses,
    normalise_cidrs,
    pod_cidrs_of,
)
from steps.network.selectors import (
    DEFAULT_ETCD_SELECTOR,
    DEFAULT_NATS_SELECTOR,
    ROLES,
    PodGroup,
    parse_selector,
    role_groups,
)
from steps.options import Duration, K8sName, Target, run_options
from steps.run import ledger as L
from steps.signals import Terminated, sigterm_raises
from steps.workload import dynamo as dgd


def target_options(func):
    """The run (`run_options`: --run-id/--namespace/--outputs-dir and the cluster) and
    --target/--dgd-version/--duration/--dry-run."""
    for option in reversed(
        [
            click.option("--target", required=True, type=Target(), help="dgd/NAME: the DynamoGraphDeployment whose pods are faulted."),
            click.option("--dgd-version", default="auto", type=click.Choice(["auto", *dgd.DGD_VERSIONS]), show_default=True),
            click.option(
                "--duration",
                default="10m",
                show_default=True,
                type=Duration(),
                help="The fault ends by itself after this (the janitor heals it even if the workflow is gone).",
            ),
            click.option("--dry-run", is_flag=True, help="Print the objects that would be created; create none."),
        ]
    ):
        func = option(func)
    return run_options(func)


def platform_options(func):
    """Where Dynamo's NATS and etcd run (the Dynamo platform chart's labels by default)."""
    for option in reversed(
        [
            click.option("--nats-selector", default=DEFAULT_NATS_SELECTOR, show_default=True, help="Label selector of the NATS pods."),
            click.option("--nats-namespace", default=None, type=K8sName(label=True), help="Namespace of NATS (default: --namespace)."),
            click.option("--etcd-selector", default=DEFAULT_ETCD_SELECTOR, show_default=True, help="Label selector of the etcd pods."),
            click.option("--etcd-namespace", default=None, type=K8sName(label=True), help="Namespace of etcd (default: --nats-namespace)."),
        ]
    ):
        func = option(func)
    return func


def platform(nats_selector: str, nats_namespace: str | None, etcd_selector: str, etcd_namespace: str | None) -> dict:
    return {
        "nats_selector": nats_selector,
        "nats_namespace": nats_namespace,
        "etcd_selector": etcd_selector,
        "etcd_namespace": etcd_namespace,
    }


def require_dgd(target: tuple[str, str]) -> None:
    if target[0] != "dgd":
        raise BadInput(
            f"network faults select pods by the Dynamo operator's labels: --target must be dgd/NAME, not {target[0]}/{target[1]}"
        )


def groups_for(
    obj: dict, role: str, namespace: str, selector: str | None, selector_namespace: str | None, platform: dict
) -> list[PodGroup]:
    """The pod groups playing `role`: a DGD role, `nats`/`etcd`, or `custom` (a label selector)."""
    if role in ROLES:
        return role_groups(obj, role)
    if role == "nats":
        return [PodGroup(platform["nats_namespace"] or namespace, parse_selector(platform["nats_selector"]))]
    if role == "etcd":
        return [PodGroup(platform["etcd_namespace"] or platform["nats_namespace"] or namespace, parse_selector(platform["etcd_selector"]))]
    if role == "custom":
        return [PodGroup(selector_namespace or namespace, parse_selector(selector or ""))]
    raise BadInput(f"unknown role {role!r}")


def check_custom(
    source_role: str, source_selector: str | None, peer_role: str, peer_selector: str | None, peer_namespace: str | None
) -> None:
    """--source-selector/--peer-selector go with (and are needed by) custom; --peer-namespace too."""
    for role, selector, option in ((source_role, source_selector, "--source-selector"), (peer_role, peer_selector, "--peer-selector")):
        if (role == "custom") != (selector is not None):
            raise BadInput(f"{option} goes with custom (and custom needs {option})")
    if peer_namespace is not None and peer_role != "custom":
        raise BadInput("--peer-namespace goes with a custom peer")


def given_cidrs(values: tuple[str, ...]) -> list[str]:
    """`--pod-cidr` values, each one CIDR or several comma-separated; empty ones (a workflow parameter
    left at its default "") give none."""
    return [c.strip() for value in values for c in value.split(",") if c.strip()]


def cluster_addresses(kube: Kube, pod_cidrs: tuple[str, ...]) -> ClusterAddresses:
    given = given_cidrs(pod_cidrs)
    cidrs = normalise_cidrs(given) if given else pod_cidrs_of(kube.list(Ref("v1", "nodes", None, "")).get("items") or [])
    service = kube.get_or_none(Ref("v1", "services", "default", "kubernetes"))
    slices = (
        kube.list(Ref("discovery.k8s.io/v1", "endpointslices", "default", ""), label_selector="kubernetes.io/service-name=kubernetes").get(
            "items"
        )
        or []
    )
    return ClusterAddresses(pod_cidrs=cidrs, api_server=api_server_addresses(service, slices))


def open_ledger(store: L.LedgerStore, namespace: str, run_id: str) -> L.Ledger:
    return store.require(namespace, run_id, preflight="preflight --fault network")


def create_all(
    step: str,
    fault: str,
    kube: Kube,
    store: L.LedgerStore,
    ledger: L.Ledger | None,
    objs: list[dict],
    present: set[str],
    duration_s: float,
    data: dict,
) -> int | None:
    """`--dry-run` (no ledger): print each object as a planned change. Otherwise create the objects not
    yet present, ledger first, and undo exactly those on SIGTERM. Returns when the entries expire."""
    if ledger is None:
        for obj in objs:
            meta = obj["metadata"]
            emit(
                step,
                EventName.PLANNED_CHANGE,
                change=f"create {obj['kind'].lower()} {meta['namespace']}/{meta['name']}",
                object=obj,
                dry_run=True,
            )
        return None
    expires_ms = L.now_ms() + int(duration_s * 1000)
    created: list[str] = []
    with sigterm_raises():
        try:
            create_recorded(kube, store, ledger.run, [o for o in objs if o["metadata"]["name"] not in present], expires_ms, data, created)
        except Terminated:
            undo(kube, store, ledger.run, created)
            emit(step, EventName.FAULT_CLEARED, run_id=ledger.run.run_id, kind=fault, reason="SIGTERM", entries=created)
            raise
    return expires_ms
