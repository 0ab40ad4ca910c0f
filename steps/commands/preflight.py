"""`faultflow step preflight`: validate, apply the guardrails, resolve node and GPU, open the ledger.

`--fault network` (the network scenarios) keeps the guardrails that apply to any fault — namespace
opted in, the DGD exists, ledger opened, `--dry-run` — and skips node, GPU and NVSentinel.

Nothing is changed before every check passed; the only write is the run ledger (and, because the
inject-xid pod has no API access, the ledger entry for the node toggle it will switch on — written
here, before that change can happen). The ledger goes to faultflow's own namespace
(`steps.run.install`).

Images are installation configuration: `--steps-image` / `--shim-image` (the scenario parameters of
the same names) are refused unless they equal the images in ConfigMap `faultflow-config`, which the
kustomize base writes (its `images:` override rewrites them there too).
"""

from __future__ import annotations

import json

import click

from steps.errors import BadInput
from steps.event_names import EventName
from steps.events import emit
from steps.gpu import nvsentinel, toggle
from steps.gpu import posture as P
from steps.gpu.guardrails import check_gpu_index, check_nvsentinel
from steps.guard import halt
from steps.guard.conditions import check_sources, parse_conditions
from steps.kube import objects as o
from steps.kube.client import Ref
from steps.options import (
    Duration,
    FaultDuration,
    HttpUrl,
    K8sName,
    Target,
    Window,
    XidType,
    chosen_expect,
    expect_options,
    run_options,
)
from steps.run import install, nvsentinel_guardrails, preconditions
from steps.run import ledger as L
from steps.run.context import RunContext
from steps.run.guardrails import check_namespace, resolve_nodes
from steps.workload import dynamo as dgd
from steps.workload import shim_patch
from steps.workload.kinds import resolve

STEP = "preflight"


@click.command(STEP)
@run_options
@click.option("--target", required=True, type=Target(), help="dgd/NAME (default kind), deployment/NAME or statefulset/NAME.")
@click.option("--dgd-version", default="auto", type=click.Choice(["auto", *dgd.DGD_VERSIONS]), show_default=True)
@click.option("--node", "nodes", multiple=True, type=K8sName(), help="Target node (default: the node of a Ready GPU worker pod).")
@click.option("--max-nodes", default=1, show_default=True, type=click.IntRange(min=1), help="Blast radius: most nodes a run may fault.")
@click.option("--gpu", default=0, show_default=True, type=click.IntRange(min=0), help="GPU index (host device minor).")
@click.option("--xid", default=None, type=XidType(), help="Required for --fault gpu.")
@click.option(
    "--fault",
    default="gpu",
    show_default=True,
    type=click.Choice(["gpu", "network"]),
    help="network: no node, GPU or NVSentinel checks (the DGD's pods are selected by label).",
)
@expect_options
@click.option("--nvsentinel-namespace", default="nvsentinel", show_default=True, type=K8sName(label=True))
@click.option(
    "--dedup-window",
    default="3m",
    show_default=True,
    type=Window(),
    help="NVSentinel's dedup window: refuse a repeat of this XID on this GPU inside it (0: no check).",
)
@click.option("--wait-dedup", is_flag=True, help="Wait until the dedup window has passed instead of refusing.")
@click.option("--toggle-dir", default=toggle.DEFAULT_DIR, show_default=True, help="Node directory of the CUDA toggle file.")
@click.option("--fault-duration", default="30m", show_default=True, type=FaultDuration(), help="The toggle's expiry (at most 24h).")
@click.option("--steps-image", default="", help="Must equal the installed steps image (ConfigMap faultflow-config) when given.")
@click.option("--shim-image", default="", help="Must equal the installed shim image (ConfigMap faultflow-config) when given.")
@click.option("--ttl", default="2h", show_default=True, type=Duration(), help="After this the janitor reverts the run.")
@click.option("--restore-node/--no-restore-node", default=False, help="Record the node's state so restore-node can undo.")
@click.option(
    "--shim/--no-shim",
    default=True,
    show_default=True,
    help="The run loads the CUDA shim into the workers (xid-only: --no-shim): check the namespace admits it.",
)
@click.option("--workflow-name", default=None, help="Owning Argo Workflow ({{workflow.name}}).")
@click.option("--workflow-namespace", default=None, help="Default: faultflow's namespace.")
@click.option("--workflow-uid", default=None)
@click.option(
    "--abort-if",
    "abort_if",
    default="",
    help="The run's stop conditions (checked here so a malformed one stops the run before anything is injected).",
)
@click.option("--prometheus-url", type=HttpUrl(), default="", help="Prometheus for promql stop conditions.")
@click.option("--dry-run", is_flag=True, help="Print every change the scenario would make; make none.")
def command(
    run_id,
    namespace,
    open_run,
    target,
    dgd_version,
    nodes,
    max_nodes,
    gpu,
    xid,
    fault,
    expect,
    nvsentinel_namespace,
    dedup_window,
    wait_dedup,
    toggle_dir,
    fault_duration,
    steps_image,
    shim_image,
    ttl,
    restore_node,
    shim,
    workflow_name,
    workflow_namespace,
    workflow_uid,
    abort_if,
    prometheus_url,
    dry_run,
):
    """Validate parameters and guardrails, resolve target node and GPU, open the run ledger."""
    expect = chosen_expect(expect)
    check_sources(parse_conditions(abort_if), prometheus_url)
    # faultflow's Workflows run in its own namespace (the janitor looks for them there only).
    workflow = (
        {"name": workflow_name, "namespace": workflow_namespace or install.home_namespace(), "uid": workflow_uid} if workflow_name else None
    )
    if fault == "network":
        if nodes or restore_node or xid is not None or steps_image or shim_image:
            raise BadInput("--node, --xid, --restore-node and the images apply to GPU faults only (--fault gpu)")
        run_context = open_run()
        halt.refuse_if_halted(run_context.kube, run_context.ledgers.home)
        network_preflight(run_context, run_id, namespace, target, dgd_version, ttl, workflow, dry_run)
        return
    if xid is None:
        raise BadInput("--xid is required for a GPU fault")
    if not toggle_dir.startswith("/") or toggle_dir.rstrip("/") in ("", "/"):
        raise BadInput(f"--toggle-dir {toggle_dir!r} must be an absolute directory below /")
    if len(set(nodes)) > max_nodes:
        raise BadInput(f"{len(set(nodes))} target nodes exceed the blast radius --max-nodes={max_nodes}")
    run_context = open_run()
    kube = run_context.kube
    # A halt in force (`faultflow halt`): no new run starts, whatever else holds.
    halt.refuse_if_halted(kube, run_context.ledgers.home)
    installed = install.load(kube, run_context.ledgers.home)
    install.check_image("--steps-image", steps_image, installed.steps_image, installed.namespace)
    install.check_image("--shim-image", shim_image, installed.shim_image, installed.namespace)
    check_namespace(kube, namespace)
    kind, name = target
    ref, obj = resolve(kube, namespace, kind, name, dgd_version)
    workers = dgd.gpu_workers(obj)
    if shim:  # issue 15 item 11: before anything is patched, will the namespace admit what the shim adds?
        preconditions.check_pod_security(kube.get(Ref("v1", "namespaces", None, namespace)))
        init = shim_patch.init_container(shim_patch.ShimConfig(installed.shim_image, xid, toggle_dir))
        preconditions.check_quota(kube, namespace, init)
    targets = resolve_nodes(kube, namespace, obj, tuple(dict.fromkeys(nodes)))
    if len(targets) > max_nodes:
        raise BadInput(f"{len(targets)} target nodes exceed the blast radius --max-nodes={max_nodes}")
    node_objs = [kube.get(Ref("v1", "nodes", None, n)) for n in targets]
    fq_config: list[P.FaultQuarantineConfig] = []

    def fault_quarantine() -> P.FaultQuarantineConfig:
        if not fq_config:
            fq_config.append(P.read_fault_quarantine(kube, nvsentinel_namespace))
        return fq_config[0]

    posture, posture_why = P.resolve_expect(expect, fault_quarantine)
    nvsentinel_facts: dict = {}
    for node_obj in node_objs:
        check_gpu_index(node_obj, gpu)
        check_nvsentinel(kube, nvsentinel_namespace, node_obj["metadata"]["name"], posture != "none")
        if posture != "none":
            nvsentinel_facts = nvsentinel_guardrails.check(
                kube,
                fault_quarantine(),
                posture,
                node_obj,
                run_id,
                namespace,
                gpu,
                xid,
                dedup_window,
                wait_dedup,
                lambda wait_s, why: emit(STEP, EventName.WAITING_FOR_DEDUP_WINDOW, run_id=run_id, wait_s=round(wait_s, 1), evidence=why),
            )
        # After NVSentinel's own guardrails: a repeat inside its dedup window is the clearer reason for a
        # node its last detection still marks.
        check_schedulable(node_obj)
    node = targets[0]
    facts = {
        "run_id": run_id,
        "namespace": namespace,
        "target": f"{kind}/{name}",
        "api_version": ref.api_version,
        "node": node,
        "gpu": gpu,
        "xid": xid,
        "workers": [c.name for c in workers],
        "node_unschedulable": o.unschedulable(node_objs[0]),
        "expect": posture,
        "expect_why": posture_why,
        **nvsentinel_facts,
    }
    if dry_run:
        _print_plan(obj, facts, toggle_dir, fault_duration)
        return

    run = L.RunInfo(
        run_id=run_id,
        namespace=namespace,
        created_ms=L.now_ms(),
        ttl_s=int(ttl),
        node=node,
        gpu=gpu,
        xid=xid,
        target=f"{kind}/{name}",
        restore_node=restore_node,
        workflow=workflow,
    )
    store = run_context.ledgers
    opened = store.open(run)
    if opened.run.target != run.target or opened.run.node != run.node:
        raise BadInput(f"run {run_id} already exists for {opened.run.target} on {opened.run.node}; use a new run id")
    for node_obj in node_objs:
        n = node_obj["metadata"]["name"]
        if restore_node:
            store.record(
                namespace,
                run_id,
                L.Entry(
                    id=f"node-{n}",
                    kind=L.NODE_STATE,
                    target={"node": n},
                    state=L.APPLIED,
                    data={"was_unschedulable": o.unschedulable(node_obj)},
                ),
            )
        store.record(
            namespace,
            run_id,
            L.Entry(
                id=f"toggle-{n}",
                kind=L.NODE_TOGGLE,
                target={"node": n},
                data={
                    "xid": xid,  # no image, path or namespace: the toggle-off pod takes those from the installation
                    "expires_ms": run.created_ms + int((ttl + fault_duration) * 1000),
                },
            ),
        )
    emit(STEP, EventName.RUN_STARTED, run_id=run_id, target=f"{kind}/{name}", node=node, xid=xid)
    emit(STEP, EventName.LEDGER_OPENED, run_id=run_id, ledger=f"{store.home}/{L.configmap_name(run_id)}")
    emit(STEP, EventName.PREFLIGHT_PASSED, **facts)
    for key in ("node", "gpu", "api_version", "expect"):
        run_context.outputs.write(key.replace("_", "-"), str(facts[key]))
    run_context.outputs.write("workers", ",".join(facts["workers"]))
    run_context.outputs.write("ledger", L.configmap_name(run_id))


def check_schedulable(node_obj: dict) -> None:
    """A node already cordoned or quarantined is refused: its old quarantine would pass as detection of
    our fault, and a maintenance cordon would get an XID on top (issue 15 item 13)."""
    name = node_obj["metadata"]["name"]
    if nvsentinel.is_quarantined(node_obj) or P.is_annotated(node_obj):
        raise BadInput(f"node {name} is already quarantined by NVSentinel: its quarantine would pass as detection; pick another node")
    if o.unschedulable(node_obj):
        raise BadInput(f"node {name} is already cordoned (maintenance?): uncordon it or pick another node")


def network_preflight(
    run_context: RunContext,
    run_id: str,
    namespace: str,
    target: tuple[str, str],
    dgd_version: str,
    ttl: float,
    workflow: dict | None,
    dry_run: bool,
) -> None:
    """The guardrails of any fault, for the network scenarios: no node, GPU or NVSentinel involved."""
    from steps.commands._network import require_dgd

    require_dgd(target)
    kind, name = target
    kube = run_context.kube
    check_namespace(kube, namespace)
    ref, _ = resolve(kube, namespace, kind, name, dgd_version)
    facts = {"run_id": run_id, "namespace": namespace, "target": f"dgd/{name}", "api_version": ref.api_version, "fault": "network"}
    if dry_run:
        emit(
            STEP,
            EventName.PLANNED_CHANGE,
            change=f"create configmap {run_context.ledgers.home}/{L.configmap_name(run_id)}",
            by_step="ledger",
            dry_run=True,
        )
        emit(STEP, EventName.PREFLIGHT_PASSED, dry_run=True, **facts)
        return
    run = L.RunInfo(run_id=run_id, namespace=namespace, created_ms=L.now_ms(), ttl_s=int(ttl), target=f"dgd/{name}", workflow=workflow)
    store = run_context.ledgers
    opened = store.open(run)
    if opened.run.target != run.target or opened.run.node is not None:
        raise BadInput(f"run {run_id} already exists for {opened.run.target} on {opened.run.node}; use a new run id")
    emit(STEP, EventName.LEDGER_OPENED, run_id=run_id, ledger=f"{store.home}/{L.configmap_name(run_id)}")
    emit(STEP, EventName.PREFLIGHT_PASSED, **facts)
    run_context.outputs.write("api-version", ref.api_version)
    run_context.outputs.write("ledger", L.configmap_name(run_id))


def _print_plan(obj: dict, facts: dict, toggle_dir: str, fault_duration: float) -> None:
    """Every change, in order, as one JSON event each (`planned_change`)."""
    cfg = shim_patch.ShimConfig(image="<shim-image>", xid=facts["xid"], toggle_dir=toggle_dir)
    new, record = shim_patch.apply_shim(obj, cfg)
    mark = shim_patch.ShimMark(facts["run_id"], install.home_namespace(), record)
    ops = shim_patch.patch_ops(obj, shim_patch.with_owner(new, facts["run_id"], mark))
    plan = [
        ("ledger", f"create configmap {install.home_namespace()}/{L.configmap_name(facts['run_id'])}", None),
        ("inject-cuda-shim", f"patch {facts['target']} components {', '.join(c.name for c in record.components)}", ops),
        (
            "inject-xid",
            f"node {facts['node']}: toggle {toggle.file_in(toggle_dir)} on for XID {facts['xid']}, expires in {fault_duration:.0f}s",
            None,
        ),
        ("inject-xid", f"node {facts['node']}: write XID {facts['xid']} for GPU {facts['gpu']} to /dev/kmsg", None),
        ("cleanup-dgd", f"restore {facts['target']} from the ledger; toggle off on node {facts['node']}", None),
    ]
    for step, what, detail in plan:
        fields = {"change": what, "by_step": step, "dry_run": True}
        if detail is not None:
            fields["json_patch"] = json.loads(json.dumps(detail))
        emit(STEP, EventName.PLANNED_CHANGE, **fields)
    emit(STEP, EventName.PREFLIGHT_PASSED, dry_run=True, **facts)
