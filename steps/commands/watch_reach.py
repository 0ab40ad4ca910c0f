"""`faultflow step watch-reach`: follows the target node's workers' logs from before the fault until
the run ends, for the CUDA shim's `injecting XID <n>` line (the required check `fault_reached_workload`).

A daemon stage: it starts after inject-cuda-shim has resolved the node, and the fault stages wait
until it is ready — it writes the output `watching` once every worker on the node has its log
stream open (the template's readinessProbe tests for that file; the local runner waits for it). So
the evidence is captured whoever is faster afterwards: NVSentinel draining the node right after the
fault deletes pods whose lines are already on our streams. It emits `fault_reached_workload` as soon
as each worker logs the line, and once more with the final finding when the DAG ends it (SIGTERM),
then exits 0. The XID matched is the scenario's parameter: it is known before the fault.
"""

from __future__ import annotations

import threading

import click

from steps.event_names import EventName
from steps.events import emit
from steps.kube.client import Ref, connect
from steps.options import K8sName, RunId, Target, XidType, common_cluster_options, outputs_option
from steps.outputs import Outputs
from steps.signals import Terminated, sigterm_raises
from steps.workload.kinds import resolve, worker_pod_selector
from steps.workload.reach import FAULT_REACHED, Finding, ReachWatch

STEP = "watch-reach"
READY = "watching"  # the output file whose existence means: every worker's log is followed


@click.command(STEP)
@click.option("--node", required=True, type=K8sName(), help="The target node (inject-cuda-shim's node output).")
@click.option("--xid", required=True, type=XidType(), help="The XID the shim will inject (the scenario's parameter).")
@click.option("--namespace", required=True, type=K8sName(label=True), help="Workload namespace.")
@click.option("--target", required=True, type=Target(), help="Workload whose workers are followed.")
@click.option("--run-id", default=None, type=RunId())
@outputs_option(required=True)
@common_cluster_options
def command(node, xid, namespace, target, run_id, outputs_dir, kubeconfig, context):
    """Follow the node's workers' logs until stopped; report whether they logged the shim injecting the XID."""
    outputs = Outputs(outputs_dir)
    outputs.check()
    kube = connect(kubeconfig, context)
    if kube.get_or_none(Ref("v1", "nodes", None, node)) is None:
        raise click.BadParameter(f"node {node} not found", param_hint="--node")
    _, workload = resolve(kube, namespace, *target)
    selector = worker_pod_selector(workload)
    # Only now, once the node and the target proved real: bad input leaves no directory behind.
    outputs.created()
    emitting = threading.Lock()  # followers report from their own threads: one event line at a time

    def report(finding: Finding) -> None:
        with emitting:
            emit(STEP, FAULT_REACHED, run_id=run_id, node=node, xid=xid, **finding.fields())

    watch = ReachWatch(kube, namespace, selector, node, xid, on_reached=report)
    with sigterm_raises():
        try:
            watch.start()
            outputs.write(READY, "true")
            with emitting:
                emit(STEP, EventName.WATCH_STARTED, run_id=run_id, node=node, xid=xid, **watch.snapshot().fields())
            threading.Event().wait()  # until SIGTERM: the DAG's foreground is over
        except Terminated:
            pass
    watch.stop.set()
    report(watch.snapshot())  # the final finding: the report's reason when no worker was reached
