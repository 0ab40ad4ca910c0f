"""`faultflow step wait-for-cordon`: watch the node until NVSentinel quarantines it.

For XIDs NVSentinel treats as fatal: success = quarantine (unschedulable + the cordon annotation +
the state label) within --timeout, then (optionally) the workers gone from the node. For non-fatal
XIDs the expectation flips: success = NOT quarantined for the whole window. Detection latency is
measured from --fault-time-ms (inject-xid's output) when given, else from the step's start.
"""

from __future__ import annotations

import time

import click

from steps import event_names as E
from steps.errors import CheckFailed
from steps.events import emit
from steps.gpu import nvsentinel
from steps.gpu.node_watch import wait_pods_left, watch_node_until
from steps.workload.reach import FAULT_REACHED, reached, workers_on_node
from steps.gpu.xids import lookup
from steps.kube.client import Ref, connect
from steps.options import (
    Duration,
    K8sName,
    RunId,
    Target,
    XidType,
    common_cluster_options,
)
from steps.outputs import Outputs
from steps.workload.kinds import resolve, worker_pod_selector

STEP = "wait-for-cordon"


@click.command(STEP)
@click.option("--node", required=True, type=K8sName())
@click.option("--xid", required=True, type=XidType(), help="Decides whether a cordon is expected (catalogue: fatal).")
@click.option("--timeout", default="5m", show_default=True, type=Duration(), help="Window for the cordon.")
@click.option("--fault-time-ms", default=None, type=click.IntRange(min=1), help="When the fault was injected (Unix ms).")
@click.option("--namespace", default=None, type=K8sName(label=True), help="Workload namespace (for --wait-evicted).")
@click.option("--target", default=None, type=Target(), help="Workload whose workers must leave the node.")
@click.option("--wait-evicted/--no-wait-evicted", default=False, show_default=True)
@click.option("--eviction-timeout", default="10m", show_default=True, type=Duration())
@click.option("--watch-timeout", default="60s", show_default=True, type=Duration(),
              help="Server-side length of one watch connection; the watch then resumes where it was.")
@click.option("--expect-cuda-faults", is_flag=True, help="The workers on the node load the CUDA shim: report whether their "
              "logs show it injecting the XID (event fault_reached_workload; needs --namespace and --target).")
@click.option("--run-id", default=None, type=RunId())
@click.option("--outputs-dir", default=None)
@common_cluster_options
def command(node, xid, timeout, fault_time_ms, namespace, target, wait_evicted, eviction_timeout, watch_timeout, expect_cuda_faults, run_id,
            outputs_dir, kubeconfig, context):
    """Wait until NVSentinel cordons the node (or, for a non-fatal XID, assert it does not)."""
    outputs = Outputs(outputs_dir)
    outputs.check()
    if (wait_evicted or expect_cuda_faults) and (namespace is None or target is None):
        raise click.BadParameter("--wait-evicted and --expect-cuda-faults need --namespace and --target")
    fatal = lookup(xid).fatal
    kube = connect(kubeconfig, context)
    if kube.get_or_none(Ref("v1", "nodes", None, node)) is None:
        raise click.BadParameter(f"node {node} not found", param_hint="--node")
    selector = None
    baseline: list[dict] = []
    if wait_evicted or expect_cuda_faults:
        _, obj = resolve(kube, namespace, *target)
        selector = worker_pod_selector(obj)
        baseline = workers_on_node(kube, namespace, selector, node)  # the workers the fault can reach
    started_ms = int(time.time() * 1000)
    since_ms = fault_time_ms or started_ms
    deadline = time.monotonic() + timeout
    detected: list[float] = []

    def on_object(current: dict) -> None:
        # NVSentinel's own detection (its node condition, or the quarantine that implies it), once.
        if not detected and (nvsentinel.xid_condition_set(current) or nvsentinel.is_quarantined(current)):
            detected.append(time.time())
            emit(STEP, E.XID_DETECTED, run_id=run_id, node=node, xid=xid,
                 latency_ms=max(0, int(detected[0] * 1000) - since_ms))

    connections: list[int] = []

    def on_connect() -> None:
        connections.append(1)
        if len(connections) == 1:  # listed, now watching: from here on no node update is missed
            emit(STEP, "watch_started", run_id=run_id, node=node, fatal=fatal, window_s=timeout)

    obj, seen_at = watch_node_until(
        kube, node, nvsentinel.is_quarantined, deadline, on_connect=on_connect, watch_timeout_s=watch_timeout,
        on_object=on_object,
        on_relist=lambda reason: emit(STEP, "watch_relisted", run_id=run_id, node=node, reason=reason))
    if expect_cuda_faults:
        hits, read = reached(kube, namespace, baseline, xid)
        emit(STEP, FAULT_REACHED, run_id=run_id, node=node, xid=xid, workers=len(baseline), read=read, reached=hits)
    if not fatal:
        if seen_at is not None:
            raise CheckFailed(f"node {node} was quarantined for XID {xid}, which NVSentinel treats as non-fatal")
        emit(STEP, "node_not_cordoned", run_id=run_id, node=node, xid=xid, window_s=timeout)
        outputs.write("cordoned", "false")
        return
    if seen_at is None:
        raise CheckFailed(f"node {node} was not quarantined within {timeout:.0f}s after XID {xid}")
    latency_ms = max(0, int(seen_at * 1000) - since_ms)
    state = ((obj.get("metadata") or {}).get("labels") or {}).get(nvsentinel.STATE_LABEL)
    emit(STEP, E.NODE_CORDONED, run_id=run_id, node=node, xid=xid, latency_ms=latency_ms, nvsentinel_state=state)
    outputs.write("cordoned", "true")
    outputs.write("detection-latency-ms", str(latency_ms))
    if wait_evicted:
        done, left = wait_pods_left(kube, namespace, selector, node, time.monotonic() + eviction_timeout, baseline=len(baseline))
        if not done and not baseline:
            raise CheckFailed(f"no worker pod of {target[0]}/{target[1]} was on node {node} when the fault came: nothing to evict, "
                              "the fault did not reach the workload")
        if not done:
            raise CheckFailed(f"{left} worker pods still on node {node} after {eviction_timeout:.0f}s")
        emit(STEP, E.PODS_EVICTED, run_id=run_id, node=node, after_ms=int(time.time() * 1000) - since_ms)
