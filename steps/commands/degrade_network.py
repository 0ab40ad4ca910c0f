"""`faultflow step degrade-network`: Chaos Mesh NetworkChaos on a DGD's pods (loss, delay, bandwidth,
corrupt, duplicate — any number of them in one run, one object per action).

Same order as partition-network: build, check for name collisions, server-side dry run (the real
CRD's schema), then ledger entry → create → applied per object. Chaos Mesh's own `duration` ends
the fault on time; the ledger entries expire at the same instant so the janitor deletes the finished
objects. SIGTERM deletes what this invocation created.
"""

from __future__ import annotations

import click

from steps.commands._network import (
    check_custom,
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
from steps.network.chaos import (
    ACTIONS,
    DIRECTIONS,
    LATENCY,
    MODES,
    RATE,
    Degradation,
    build_chaos,
)
from steps.network.objects import existing, validate_on_server
from steps.network.selectors import ROLES
from steps.options import FiniteFloat, K8sName, Pattern
from steps.workload.kinds import resolve

STEP = "degrade-network"
PERCENT = FiniteFloat(0.0, 100.0, low_open=True)
CORRELATION = FiniteFloat(0.0, 100.0)


LATENCY_VALUE = Pattern(LATENCY, "latency", "100ms")
RATE_VALUE = Pattern(RATE, "rate", "10mbps")


def check_mode(mode: str, value: str | None) -> None:
    """Chaos Mesh's `value` is required by, and only read for, the counting modes."""
    if mode in ("all", "one"):
        if value is not None:
            raise BadInput(f"--mode-value does not go with --mode {mode}")
        return
    if value is None or not value.isdigit() or int(value) < 1:
        raise BadInput(f"--mode {mode} needs --mode-value, a whole number >= 1")
    if mode != "fixed" and int(value) > 100:
        raise BadInput(f"--mode {mode}: --mode-value is a percentage (1-100)")


@click.command(STEP)
@target_options
@click.option(
    "--pods", "source_role", default="worker", show_default=True, type=click.Choice([*ROLES, "custom"]), help="Whose traffic is degraded."
)
@click.option("--source-selector", default=None, help="--pods custom: their label selector.")
@click.option(
    "--peer",
    "peer_role",
    default="none",
    show_default=True,
    type=click.Choice(["none", *ROLES, "nats", "etcd", "custom"]),
    help="Only traffic with these pods (none: all their traffic).",
)
@click.option("--peer-selector", default=None, help="--peer custom: their label selector.")
@click.option("--peer-namespace", default=None, type=K8sName(label=True), help="--peer custom: their namespace (default: --namespace).")
@click.option(
    "--direction", default="to", show_default=True, type=click.Choice(DIRECTIONS), help="Chaos Mesh direction (from/both need --peer)."
)
@click.option("--mode", default="all", show_default=True, type=click.Choice(MODES), help="Blast radius among the selected pods.")
@click.option("--mode-value", default=None, help="Count (fixed) or percentage (fixed-percent, random-max-percent).")
@click.option(
    "--action",
    "only_actions",
    multiple=True,
    type=click.Choice(ACTIONS),
    help="Only these actions (the others' values are ignored: a UI passes every value). Default: every action given a value.",
)
@click.option("--loss", default=None, type=PERCENT, help="Packet loss, percent.")
@click.option("--loss-correlation", default=0.0, type=CORRELATION)
@click.option("--delay", "--latency", "delay", default=None, type=LATENCY_VALUE, help="Added latency, e.g. 100ms.")
@click.option("--jitter", default=None, type=LATENCY_VALUE, help="Jitter of --delay, e.g. 10ms.")
@click.option("--delay-correlation", default=0.0, type=CORRELATION)
@click.option("--bandwidth", "--rate", "bandwidth", default=None, type=RATE_VALUE, help="Rate limit, e.g. 10mbps.")
@click.option("--bandwidth-limit", default=20480, show_default=True, type=click.IntRange(1, 2**31 - 1), help="Queue bytes.")
@click.option("--bandwidth-buffer", default=10000, show_default=True, type=click.IntRange(1, 2**31 - 1), help="Bucket bytes.")
@click.option("--corrupt", default=None, type=PERCENT, help="Corrupted packets, percent.")
@click.option("--corrupt-correlation", default=0.0, type=CORRELATION)
@click.option("--duplicate", default=None, type=PERCENT, help="Duplicated packets, percent.")
@click.option("--duplicate-correlation", default=0.0, type=CORRELATION)
@platform_options
def command(
    run_id,
    namespace,
    open_run,
    target,
    dgd_version,
    duration,
    dry_run,
    source_role,
    source_selector,
    peer_role,
    peer_selector,
    peer_namespace,
    direction,
    mode,
    mode_value,
    only_actions,
    loss,
    loss_correlation,
    delay,
    jitter,
    delay_correlation,
    bandwidth,
    bandwidth_limit,
    bandwidth_buffer,
    corrupt,
    corrupt_correlation,
    duplicate,
    duplicate_correlation,
    nats_selector,
    nats_namespace,
    etcd_selector,
    etcd_namespace,
):
    """Degrade a DGD's network with Chaos Mesh (one NetworkChaos per action)."""
    check_custom(source_role, source_selector, peer_role, peer_selector, peer_namespace)
    if direction != "to" and peer_role == "none":
        raise BadInput(f"--direction {direction} needs --peer (Chaos Mesh applies from/both to a target only)")
    check_mode(mode, mode_value)
    require_dgd(target)
    degradation = Degradation(
        loss,
        loss_correlation,
        delay,
        jitter,
        delay_correlation,
        bandwidth,
        bandwidth_limit,
        bandwidth_buffer,
        corrupt,
        corrupt_correlation,
        duplicate,
        duplicate_correlation,
    )
    if only_actions:
        degradation = degradation.only(only_actions)
    elif jitter is not None and delay is None:
        raise BadInput("--jitter goes with --delay")
    if not degradation.actions():
        raise BadInput("nothing to degrade: give at least one of --loss, --delay, --bandwidth, --corrupt, --duplicate")
    platform = platform_of(nats_selector, nats_namespace, etcd_selector, etcd_namespace)
    run = open_run()
    kube, store = run.kube, run.ledgers
    ledger = None if dry_run else open_ledger(store, namespace, run_id)
    _, obj = resolve(kube, namespace, "dgd", target[1], dgd_version)
    sources = groups_for(obj, source_role, namespace, source_selector, None, platform)
    peers = [] if peer_role == "none" else groups_for(obj, peer_role, namespace, peer_selector, peer_namespace, platform)
    objs = build_chaos(run_id, sources, peers, degradation, mode, mode_value, direction, duration)
    present = existing(kube, objs, run_id)
    validate_on_server(kube, objs, present)
    names = [o["metadata"]["name"] for o in objs]
    expires_ms = create_all(
        STEP, "network-degrade", kube, store, ledger, objs, present, duration, {"actions": [a for a, _ in degradation.actions()]}
    )
    if expires_ms is None:
        return
    emit(
        STEP,
        EventName.FAULT_INJECTED,
        run_id=run_id,
        kind="network-degrade",
        actions=[a for a, _ in degradation.actions()],
        objects=names,
        already=len(present) == len(objs),
        expires_ms=expires_ms,
    )
    run.outputs.write("chaos", ",".join(names))
    run.outputs.write("expires-ms", str(expires_ms))
