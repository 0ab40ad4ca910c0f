"""`faultflow step verify-partition`: prove that the run's network fault is in place.

Always, against the API: each object the ledger lists exists, still carries the run's label and the
recorded spec, and selects at least one pod; for a partition, none of the pods it is meant to cut
off is allowed by any of its peers (label peers evaluated by the API server's own selector matching;
ipBlocks by the pods' IPs), and DNS and the API server stay allowed. Only with `--probe-image`: a
probe pod carrying the partitioned pods' labels tries a blocked pod (must fail) and the API server
by its DNS name (must work), and reports through its termination message.
"""

from __future__ import annotations

from dataclasses import asdict

import click

from steps.commands._network import open_ledger
from steps.errors import BadInput, CheckFailed
from steps.event_names import EventName
from steps.events import emit
from steps.kube import objects as o
from steps.kube.client import Ref
from steps.network.objects import same_spec
from steps.network.verify import (
    Check,
    check_chaos,
    check_policy,
    probe_pod,
    probe_target,
    run_probe,
)
from steps.options import Duration, run_options
from steps.run import ledger as L
from steps.signals import sigterm_raises

STEP = "verify-partition"


@click.command(STEP)
@run_options
@click.option("--probe-image", default=None, help="Also run a probe pod (an image with python3) on the partitioned side.")
@click.option(
    "--probe-port",
    default=None,
    type=click.IntRange(1, 65535),
    help="Port of the cut-off pods to try (default: their first containerPort).",
)
@click.option("--probe-timeout", default="2m", show_default=True, type=Duration())
def command(run_id, namespace, open_run, probe_image, probe_port, probe_timeout):
    """Prove the run's network fault is in place: objects, selected pods, cut-off pods, optionally a probe."""
    if probe_image is not None and (not probe_image.strip() or any(c.isspace() for c in probe_image)):
        raise BadInput(f"--probe-image {probe_image!r} is not an image reference")
    run = open_run()
    kube, store = run.kube, run.ledgers
    ledger = open_ledger(store, namespace, run_id)
    entries = [e for e in ledger.active() if e.kind in (L.NETWORK_POLICY, L.NETWORK_CHAOS)]
    if not entries:
        raise CheckFailed(f"run {run_id} has no active network fault to verify")
    checks: list[Check] = []
    probes: list[tuple[dict, list[dict]]] = []
    for entry in entries:
        live = kube.get_or_none(Ref.from_dict(entry.target))
        ours = live is not None and o.labels(live).get(L.RUN_LABEL) == run_id
        checks.append(
            Check(f"{entry.target['name']}:exists", ours, "present, labelled with the run" if ours else "missing or not this run's")
        )
        if not ours:
            continue
        unchanged = same_spec(live["spec"], entry.data.get("spec") or {})
        checks.append(Check(f"{entry.target['name']}:unchanged", unchanged, "spec as created" if unchanged else "spec was changed"))
        if entry.kind == L.NETWORK_CHAOS:
            checks.extend(check_chaos(kube, live))
            continue
        policy_checks, _, blocked = check_policy(kube, entry, live)
        checks.extend(policy_checks)
        if "Egress" in live["spec"]["policyTypes"]:
            probes.append((live, blocked))
    probed = "skipped (no --probe-image)"
    if probe_image is not None:
        with sigterm_raises():
            for live, blocked in probes:
                target = probe_target(blocked, probe_port)
                if target is None:
                    checks.append(Check(f"{live['metadata']['name']}:probe", False, "no cut-off pod with an IP and a port to try"))
                    continue
                checks.append(
                    run_probe(kube, store, ledger.run, probe_pod(run_id, live, probe_image, target, probe_timeout), probe_timeout)
                )
        probed = f"{len(probes)} probe pods" if probes else "nothing to probe (no egress partition)"
    for check in checks:
        emit(STEP, EventName.CHECK_PASSED if check.passed else EventName.CHECK_FAILED, check=check.name, reason=check.detail)
    emit(
        STEP,
        EventName.PARTITION_VERIFIED,
        run_id=run_id,
        checked=[
            "objects exist with the run's label and recorded spec",
            "selected pods",
            "cut-off pods not allowed by any peer",
            "DNS and API server allowed",
        ],
        probe=probed,
        passed=all(c.passed for c in checks),
    )
    run.outputs.write("verify.json", [asdict(c) for c in checks])
    failed = [c for c in checks if not c.passed]
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(checks)} checks failed: " + "; ".join(f"{c.name} ({c.detail})" for c in failed[:3]))
