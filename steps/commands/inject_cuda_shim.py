"""`faultflow step inject-cuda-shim`: load the CUDA shim (passthrough) into the GPU workers.

Ledger first (the exact original object and what will be added), then one resourceVersion-guarded
JSON patch for all workers (atomic: a crash leaves either nothing or everything), then the watch for
the rollout and the marker check. Running it again adds nothing: workers that already carry the
shim are skipped. SIGTERM before the step finishes removes what it added.

`--nvml-consumers ns/name,…` also preloads the NVML interposer into those DaemonSets (the device
plugin, DCGM, the DRA driver: steps.workload.nvml_consumers), each ledger-first with its exact
restore; each must carry the opt-in label itself. All are checked before anything is changed.
"""

from __future__ import annotations

import click

from steps.errors import BadInput, CheckFailed
from steps.event_names import EventName
from steps.events import emit
from steps.gpu import toggle
from steps.options import (
    Duration,
    Target,
    XidType,
    run_options,
)
from steps.run import install
from steps.signals import Terminated, sigterm_raises
from steps.workload import dynamo as dgd
from steps.workload import nvml_consumers as nvml
from steps.workload.kinds import (
    resolve,
)
from steps.workload.rollout import MARKER, wait_rolled_out
from steps.workload.shim_inject import (
    inject,
    pods_missing_marker,
    ready_workers,
    remove,
)
from steps.workload.shim_patch import ShimConfig

STEP = "inject-cuda-shim"


@click.command(STEP)
@run_options
@click.option("--target", required=True, type=Target(), help="dgd/NAME, deployment/NAME or statefulset/NAME.")
@click.option("--dgd-version", default="auto", type=click.Choice(["auto", *dgd.DGD_VERSIONS]), show_default=True)
@click.option(
    "--shim-image",
    default="",
    help="Image holding /opt/faultflow/libfaultflow_cuda.so: the installed one (ConfigMap faultflow-config); another is refused.",
)
@click.option("--xid", required=True, type=XidType())
@click.option("--toggle-dir", default=toggle.DEFAULT_DIR, show_default=True)
@click.option("--container", default=None, help="Main container of a Deployment/StatefulSet (default: first).")
@click.option("--timeout", default="10m", show_default=True, type=Duration(), help="Rollout deadline.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for the rollout.")
@click.option("--verify-marker/--no-verify-marker", default=True, show_default=True, help="Check worker logs for the shim's marker.")
@click.option(
    "--nvml-consumers",
    default="",
    help="DaemonSets (namespace/name, comma-separated) that read NVML — device plugin, DCGM, DRA driver — to "
    "preload libfaultflow_nvml.so into; each must carry the label faultflow.dev/allow-faults=true itself.",
)
def command(
    run_id, namespace, open_run, target, dgd_version, shim_image, xid, toggle_dir, container, timeout, wait, verify_marker, nvml_consumers
):
    """Patch the workload's GPU workers to load the CUDA shim in passthrough mode."""
    consumers = nvml.parse_consumers(nvml_consumers)
    if shim_image and (not shim_image.strip() or any(c.isspace() for c in shim_image)):
        raise BadInput(f"--shim-image {shim_image!r} is not an image reference")
    if not toggle_dir.startswith("/") or toggle_dir.rstrip("/") in ("", "/"):
        raise BadInput(f"--toggle-dir {toggle_dir!r} must be an absolute directory below /")
    run = open_run()
    kube, store = run.kube, run.ledgers
    installed = install.load(kube, store.home)
    install.check_image("--shim-image", shim_image, installed.shim_image, installed.namespace)
    shim_image = installed.shim_image  # images are installation configuration, never a run's choice
    kind, name = target
    ref, obj = resolve(kube, namespace, kind, name, dgd_version)
    ledger = store.require(namespace, run_id)
    cfg = ShimConfig(image=shim_image, xid=xid, toggle_dir=toggle_dir, container=container)
    workers = [c.name for c in dgd.gpu_workers(obj, container)]
    for consumer in consumers:  # every consumer checked before anything changes
        live_consumer = kube.get_or_none(consumer.ref)
        if live_consumer is None:
            raise BadInput(f"--nvml-consumers: DaemonSet {consumer} not found")
        nvml.check_opted_in(live_consumer, consumer)
    with sigterm_raises():
        try:
            patched = inject(kube, store, ledger.run, ref, cfg)
            emit(STEP, EventName.SHIM_PATCHED, run_id=run_id, target=str(ref), components=patched, already=not patched)
            for consumer in consumers:
                now = nvml.inject(kube, store, ledger.run, consumer, cfg)
                emit(
                    STEP, EventName.SHIM_PATCHED, run_id=run_id, target=f"daemonset/{consumer}", library=nvml.NVML_LIB_NAME, already=not now
                )
            if wait:
                waited = wait_rolled_out(kube, ref, workers, timeout)
                emit(STEP, EventName.ROLLOUT_DONE, run_id=run_id, target=str(ref), seconds=round(waited, 3))
                for consumer in consumers:
                    waited = wait_rolled_out(kube, consumer.ref, [], timeout, done=nvml.rolled_out)
                    emit(STEP, EventName.ROLLOUT_DONE, run_id=run_id, target=f"daemonset/{consumer}", seconds=round(waited, 3))
                # The node is resolved after the rollout: the run's node must still hold a Ready worker (the
                # rollout may have moved them all elsewhere), and only its workers' markers count.
                node = ledger.run.node
                live = kube.get(ref)
                total = len(ready_workers(kube, namespace, live, node))
                if total == 0:
                    raise CheckFailed(
                        f"no Ready worker pod of {ref} on the target node {node} after the rollout: the fault "
                        "would miss the workload (run again, or pass preflight --node a node that holds one)"
                    )
                if verify_marker:
                    missing, total = pods_missing_marker(kube, namespace, live, cfg.toggle_file, container, node)
                    if missing:
                        raise CheckFailed(
                            f"the shim did not load in {len(missing)} of {total} Ready worker pods ({', '.join(missing[:5])}): "
                            f"no '{MARKER} ... toggle={cfg.toggle_file} (mapped)' line in their logs"
                        )
                    emit(STEP, EventName.SHIM_VERIFIED, run_id=run_id, pods=total)
        except Terminated:
            remove(kube, store, ledger.run, ref)
            emit(STEP, EventName.DGD_RESTORED, run_id=run_id, target=str(ref), reason="SIGTERM")
            for consumer in consumers:
                action = nvml.remove_recorded(kube, store, ledger.run, consumer)
                emit(STEP, EventName.DGD_RESTORED, run_id=run_id, target=f"daemonset/{consumer}", reason="SIGTERM", action=action)
            raise
    run.outputs.write("patched-components", ",".join(workers))
    if ledger.run.node:
        run.outputs.write("node", ledger.run.node)
