"""`faultflow step wait-for-cordon`: watch the node until NVSentinel quarantines it.

What to expect (`--expect`, steps.gpu.posture): `cordon` — for a line NVSentinel treats as fatal,
success = quarantine (unschedulable + the cordon annotation + the state label) within --timeout, then
(optionally) the workers gone from the node; `annotate` (NVSentinel dry-run / monitor-only) — success
= the `quarantineHealthEvent` annotation and the state label, and no cordon; `none` — nothing may
happen. For a line NVSentinel treats as non-fatal the expectation flips: nothing for the whole window.

Whether the line is fatal comes from `--expected-action`, inject-xid's per-node expectation
(steps.gpu.expectation: gpu_metadata.json, driver version, 154's recovery text); without it, from
the catalogue. When NVSentinel's condition names an action for our error code, it is checked against
the expectation and both are reported (`check_passed`/`check_failed`, check `nvsentinel_action`).

A fatal line that was not acted on while the node condition shows the same error code (and GPU)
inside the dedup window before the fault is reported as `deduplicated` (event `xid_deduplicated`,
output `outcome`): NVSentinel worked as configured, the run tested nothing. Detection latency is
measured from --fault-time-ms (inject-xid's output) when given, else from the step's start.

With --fault-time-ms only a marking made after the fault counts (steps.gpu.quarantine_transition): a
node NVSentinel quarantined before the fault does not pass on that quarantine alone.

`--expect-consumer` (repeatable) adds the answers of the node's NVML consumers
(steps.gpu.consumer_checks): `allocatable` (device plugin), `dra-taint` (DRA driver),
`condition:<Type>` (e.g. GKE's XidCriticalError). Each is awaited within the same window, reported
with its time since the fault (event `consumer_detected`, check `consumer_<name>`), and fails the
step when it does not come.

Whether the fault reached the workers' CUDA calls is not this step's to say: by the time it looks,
NVSentinel may have drained the node and the workers' logs are gone. `watch-reach` follows those
logs from before the fault (a daemon stage) and reports `fault_reached_workload`.
"""

from __future__ import annotations

import re
import time

import click

from steps.errors import BadInput, CheckFailed
from steps.event_names import EventName
from steps.events import emit
from steps.gpu import consumer_checks, nvsentinel
from steps.gpu import posture as P
from steps.gpu.consumer_watch import ConsumerTracker
from steps.gpu.expectation import expect as catalogue_expectation
from steps.gpu.node_watch import wait_pods_left, watch_node_until
from steps.gpu.quarantine_transition import MarkingAfterFault, xid_condition_after
from steps.kube.client import Ref, connect
from steps.options import (
    Duration,
    K8sName,
    RunId,
    Target,
    Window,
    XidType,
    chosen_expect,
    common_cluster_options,
    expect_options,
    outputs_option,
)
from steps.outputs import Outputs
from steps.workload.kinds import resolve, worker_pod_selector
from steps.workload.reach import workers_on_node

STEP = "wait-for-cordon"


class ConsumerCheckType(click.ParamType):
    """One check, or several comma-separated (a workflow parameter is one string; empty: none)."""

    name = "consumer"

    def convert(self, value, param, ctx) -> tuple[consumer_checks.ConsumerCheck, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(consumer_checks.parse(part.strip()) for part in str(value).split(",") if part.strip())
        except BadInput as error:
            self.fail(str(error), param, ctx)


@click.command(STEP)
@click.option("--node", required=True, type=K8sName())
@click.option("--xid", required=True, type=XidType(), help="Decides whether a cordon is expected (catalogue: fatal).")
@click.option("--timeout", default="5m", show_default=True, type=Duration(), help="Window for the cordon.")
@click.option("--fault-time-ms", default=None, type=click.IntRange(min=1), help="When the fault was injected (Unix ms).")
@click.option("--namespace", default=None, type=K8sName(label=True), help="Workload namespace (for --wait-evicted).")
@click.option("--target", default=None, type=Target(), help="Workload whose workers must leave the node.")
@click.option("--wait-evicted/--no-wait-evicted", default=False, show_default=True)
@click.option(
    "--workers-confirmed",
    is_flag=True,
    help="An earlier step confirmed workers on the node before the fault (inject-cuda-shim's node output): "
    "none there when this step looks means they have already been evicted, not that there was nothing to evict.",
)
@click.option("--eviction-timeout", default="10m", show_default=True, type=Duration())
@click.option(
    "--watch-timeout",
    default="60s",
    show_default=True,
    type=Duration(),
    help="Server-side length of one watch connection; the watch then resumes where it was.",
)
@expect_options
@click.option(
    "--expected-action",
    default=None,
    type=click.Choice(sorted(nvsentinel.ACTION_CODES)),
    help="NVSentinel's action for the written line on this node (inject-xid's expected-action output).",
)
@click.option("--expected-why", default=None, help="Why that action (inject-xid's expected-why output), for the report.")
@click.option("--pci", default=None, type=click.STRING, help="The faulted GPU's PCI address (inject-xid's pci output).")
@click.option(
    "--dedup-window", default="3m", show_default=True, type=Window(), help="NVSentinel's dedup window (0: NVSentinel runs without dedup)."
)
@click.option(
    "--nvsentinel-namespace",
    default="nvsentinel",
    show_default=True,
    type=K8sName(label=True),
    help="Where fault-quarantine's configuration is read (--expect auto).",
)
@click.option(
    "--expect-consumer",
    "expect_consumers",
    multiple=True,
    type=ConsumerCheckType(),
    help="An NVML consumer's answer to await in the window (repeatable): allocatable (nvidia.com/gpu drops: "
    "the device plugin), dra-taint (ResourceSlice taint gpu.nvidia.com/xid or gpu-lost: the DRA driver), "
    "condition:<Type> (a node condition, e.g. condition:XidCriticalError).",
)
@click.option("--run-id", default=None, type=RunId())
@outputs_option()
@common_cluster_options
def command(
    node,
    xid,
    timeout,
    fault_time_ms,
    namespace,
    target,
    wait_evicted,
    workers_confirmed,
    eviction_timeout,
    watch_timeout,
    expect,
    expected_action,
    expected_why,
    pci,
    dedup_window,
    nvsentinel_namespace,
    expect_consumers,
    run_id,
    outputs_dir,
    kubeconfig,
    context,
):
    """Wait until NVSentinel cordons the node (or, for a non-fatal XID, assert it does not)."""
    outputs = Outputs(outputs_dir)
    outputs.check()
    expect = chosen_expect(expect)
    if wait_evicted and (namespace is None or target is None):
        raise click.BadParameter("--wait-evicted needs --namespace and --target")
    if pci is not None and not re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}", pci):
        raise click.BadParameter(f"{pci!r} is not dddd:bb:dd in lower-case hex", param_hint="--pci")
    fallback = catalogue_expectation(xid)
    action = expected_action or fallback.action
    why = expected_why or (fallback.why if expected_action is None else "given")
    error_code = fallback.error_code
    fatal = action != "NONE"
    if outputs.directory is not None:
        outputs.created()
    kube = connect(kubeconfig, context)
    if kube.get_or_none(Ref("v1", "nodes", None, node)) is None:
        raise click.BadParameter(f"node {node} not found", param_hint="--node")
    posture, posture_why = P.resolve_expect(expect, lambda: P.read_fault_quarantine(kube, nvsentinel_namespace))
    expecting = {"expect": posture, "expect_why": posture_why, "expected_action": action, "expected_why": why}
    if posture == "none":
        fatal = False
    reached = P.is_annotated if posture == "annotate" else nvsentinel.is_quarantined
    # Only a marking made after the fault is NVSentinel's answer to it (a pre-existing quarantine is not).
    marked_after = MarkingAfterFault(lambda n: reached(n) or nvsentinel.is_quarantined(n), fault_time_ms)
    quarantined_after = MarkingAfterFault(nvsentinel.is_quarantined, fault_time_ms)
    selector = None
    baseline: list[dict] = []
    if wait_evicted:
        _, obj = resolve(kube, namespace, *target)
        selector = worker_pod_selector(obj)
        baseline = workers_on_node(kube, namespace, selector, node)  # the workers the fault can reach
    started_ms = int(time.time() * 1000)
    since_ms = fault_time_ms or started_ms
    deadline = time.monotonic() + timeout
    detected: list[float] = []
    checks = list(dict.fromkeys(c for given in expect_consumers for c in given))  # repeated names count once
    consumers = ConsumerTracker(checks, since_ms if fault_time_ms else None, pci)

    def on_object(current: dict) -> None:
        consumers.observe(current)
        # NVSentinel's own detection (its node condition, or the quarantine that implies it), once.
        if not detected and (xid_condition_after(current, fault_time_ms, error_code, pci) or quarantined_after(current)):
            detected.append(time.time())
            emit(STEP, EventName.XID_DETECTED, run_id=run_id, node=node, xid=xid, latency_ms=max(0, int(detected[0] * 1000) - since_ms))

    connections: list[int] = []

    def on_connect() -> None:
        connections.append(1)
        if len(connections) == 1:  # listed, now watching: from here on no node update is missed
            emit(STEP, EventName.WATCH_STARTED, run_id=run_id, node=node, fatal=fatal, window_s=timeout, **expecting)

    def quarantined_or_marked(current: dict) -> bool:
        # Under `annotate` a cordon is also an answer (a wrong one): stop watching and say so.
        return marked_after(current)

    obj, seen_at = watch_node_until(
        kube,
        node,
        quarantined_or_marked,
        deadline,
        on_connect=on_connect,
        watch_timeout_s=watch_timeout,
        on_object=on_object,
        on_relist=lambda reason: emit(STEP, EventName.WATCH_RELISTED, run_id=run_id, node=node, reason=reason),
    )
    consumers.wait_rest(kube, node, deadline, watch_timeout)
    missed = _consumer_results(run_id, node, xid, consumers, since_ms, timeout)

    def finish() -> None:
        if missed:
            raise CheckFailed(f"node {node}: no answer within {timeout:.0f}s from {', '.join(missed)}")

    what = "annotated" if posture == "annotate" else "quarantined"
    if not fatal:
        if seen_at is not None:
            reason = (
                "NVSentinel was expected to do nothing (--expect none)"
                if posture == "none"
                else f"which NVSentinel treats as non-fatal here (expected {action}: {why})"
            )
            _action_check(run_id, expecting, False, f"node {node} was {what} for XID {xid}, {reason}")
            raise CheckFailed(f"node {node} was {what} for XID {xid}, {reason}")
        emit(STEP, EventName.NODE_NOT_CORDONED, run_id=run_id, node=node, xid=xid, window_s=timeout, **expecting)
        _action_check(run_id, expecting, True, f"not {what}, as expected ({posture}, {action})")
        outputs.write("cordoned", "false")
        outputs.write("outcome", "not-" + what)
        finish()
        return
    if seen_at is None:
        current = kube.get(Ref("v1", "nodes", None, node))
        repeat = P.condition_repeat(current, error_code, pci, since_ms, dedup_window) if dedup_window > 0 else None
        if repeat is not None:
            emit(STEP, EventName.XID_DEDUPLICATED, run_id=run_id, node=node, xid=xid, evidence=repeat, window_s=dedup_window, **expecting)
            outputs.write("outcome", "deduplicated")
            _action_check(run_id, expecting, False, f"deduplicated: {repeat}")
            raise CheckFailed(
                f"deduplicated: NVSentinel treated XID {xid} on node {node} as a repeat inside its "
                f"{dedup_window:.0f}s window ({repeat}); it worked as configured, this run tested nothing"
            )
        _action_check(run_id, expecting, False, f"not {what} within {timeout:.0f}s")
        stale = f"; it was {marked_after.stale}, which is no detection of this fault" if marked_after.stale else ""
        raise CheckFailed(f"node {node} was not {what} within {timeout:.0f}s after XID {xid} (expected {action}: {why}){stale}")
    latency_ms = max(0, int(seen_at * 1000) - since_ms)
    state = ((obj.get("metadata") or {}).get("labels") or {}).get(nvsentinel.STATE_LABEL)
    observed = observed_action(obj, error_code, pci)
    if posture == "annotate" and (obj.get("spec") or {}).get("unschedulable"):
        _action_check(run_id, expecting, False, "cordoned although NVSentinel's posture is annotate")
        raise CheckFailed(f"node {node} was cordoned although NVSentinel was expected to annotate only ({posture_why})")
    if observed is not None and observed != action:
        _action_check(run_id, expecting, False, f"NVSentinel chose {observed}, expected {action} ({why})", observed)
        raise CheckFailed(f"NVSentinel chose {observed} for XID {xid} on node {node}; expected {action} ({why})")
    _action_check(run_id, expecting, True, f"{what}; action {observed or 'not shown'}, expected {action} ({why})", observed)
    if posture == "annotate":
        emit(STEP, EventName.NODE_ANNOTATED, run_id=run_id, node=node, xid=xid, latency_ms=latency_ms, nvsentinel_state=state)
        outputs.write("cordoned", "false")
        outputs.write("outcome", "annotated")
        outputs.write("detection-latency-ms", str(latency_ms))
        finish()
        return
    emit(STEP, EventName.NODE_CORDONED, run_id=run_id, node=node, xid=xid, latency_ms=latency_ms, nvsentinel_state=state)
    outputs.write("cordoned", "true")
    outputs.write("outcome", "cordoned")
    outputs.write("detection-latency-ms", str(latency_ms))
    if wait_evicted:
        # The workers on the node before the fault: this step's own listing comes after it, and NVSentinel
        # may have drained the node already (its SIMULATOR in well under a second; a stage pod takes
        # longer to start). With --workers-confirmed, inject-cuda-shim saw them before the fault.
        before = max(len(baseline), 1 if workers_confirmed else 0)
        done, left = wait_pods_left(kube, namespace, selector, node, time.monotonic() + eviction_timeout, baseline=before)
        if not done and not before:
            raise CheckFailed(
                f"no worker pod of {target[0]}/{target[1]} was on node {node} when the fault came: nothing to evict, "
                "the fault did not reach the workload"
            )
        if not done:
            raise CheckFailed(f"{left} worker pods still on node {node} after {eviction_timeout:.0f}s")
        emit(STEP, EventName.PODS_EVICTED, run_id=run_id, node=node, after_ms=int(time.time() * 1000) - since_ms)
    finish()


def _consumer_results(run_id, node: str, xid: int, consumers: ConsumerTracker, since_ms: int, window_s: float) -> list[str]:
    """One event and one check per selected consumer answer; returns the names of those that did not come."""
    missed = []
    for check in consumers.checks:
        seen = consumers.sightings.get(check.name)
        if seen is None:
            hint = ""
            if check.kind is consumer_checks.ConsumerKind.ALLOCATABLE and xid in consumer_checks.DEVICE_PLUGIN_IGNORED_XIDS:
                hint = f" (the device plugin ignores XID {xid} by default)"
            reason = f"{check.consumer}: no {check.name} within {window_s:.0f}s{hint}"
            emit(STEP, EventName.CHECK_FAILED, run_id=run_id, check=check.check_name, consumer=check.consumer, reason=reason)
            missed.append(f"{check.consumer} ({check.name}){hint}")
            continue
        latency_ms = max(0, int(seen.at * 1000) - since_ms)
        emit(
            STEP,
            EventName.CONSUMER_DETECTED,
            run_id=run_id,
            node=node,
            xid=xid,
            consumer=check.consumer,
            check=check.name,
            latency_ms=latency_ms,
            evidence=seen.evidence,
            at_start=seen.at_start,
        )
        bound = "at most " if seen.at_start else ""
        emit(
            STEP,
            EventName.CHECK_PASSED,
            run_id=run_id,
            check=check.check_name,
            consumer=check.consumer,
            reason=f"{check.consumer}: {seen.evidence}, {bound}{latency_ms / 1000:.1f} s after the fault",
        )
    return missed


def observed_action(node: dict, error_code: str, pci: str | None) -> str | None:
    """The action NVSentinel's condition names for our error code (and GPU), if it shows one."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") != nvsentinel.XID_CONDITION or condition.get("status") != "True":
            continue
        for entry in (condition.get("message") or "").split(";"):
            if f"ErrorCode:{error_code} " in entry and (pci is None or f"PCI:{pci}" in entry):
                found = re.search(r"Recommended Action=([A-Z_]+)\s*$", entry)
                if found:
                    return found.group(1)
    return None


def _action_check(run_id, expecting: dict, passed: bool, reason: str, observed: str | None = None) -> None:
    """The report's record of what was expected of NVSentinel, why, and what it did."""
    emit(
        STEP,
        EventName.CHECK_PASSED if passed else EventName.CHECK_FAILED,
        run_id=run_id,
        check="nvsentinel_action",
        reason=reason,
        observed_action=observed,
        **expecting,
    )
