"""The GPU world on a started real lab cluster (`lab.nodes.cluster.RealCluster`): one entry point for
`faultflow lab up`.

    cluster = RealCluster(folder, plan_nodes(2), extra_images=world.IMAGES).start()
    handle = world.start(cluster)          # returns once the DGD is rolled out
    ...
    handle.stop(); cluster.stop()

What `start` makes (as the simulated lab's `lab.world` does, on real nodes):
* the DGD CRD at the chosen version;
* faultflow's namespace and ConfigMap `faultflow-config` (what `kubectl apply -k deploy` makes);
* the DGD operator SIMULATOR as a Deployment in `dynamo-system`, where Dynamo's operator runs
  (`lab.simulators.operator_install`);
* the NVSENTINEL SIMULATOR as a DaemonSet on the GPU nodes, with NVSentinel's ConfigMaps
  (`lab.simulators.nvsentinel`);
* the workload namespace, opted in (`faultflow.dev/allow-faults=true`), with the lab's DGD
  (`lab.simulators.workload`).
Every simulator is a pod: the world starts no process on the host, so the cluster's own ledger and
`teardown` (`lab.nodes.cluster`) are all `down` needs. Everything else is the real cluster's:
Deployments, the scheduler, kubelets, EndpointSlices, CoreDNS, the garbage collector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lab import crd_install, crds, processes
from lab.images import build as images
from lab.images import worker
from lab.nodes.cluster import RealCluster
from lab.nvsentinel_simulator import NvsentinelConfig
from lab.simulators import nvsentinel, operator_install
from lab.simulators.dgd_operator import FRONTEND_PORT
from lab.simulators.workload import lab_dgd
from steps.gpu import nvsentinel as nv
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, Ref, connect
from steps.run.guardrails import OPT_IN_LABEL
from steps.workload import dynamo as dgd_model
from steps.workload.rollout import rolled_out

# What the world's pods run, for `RealCluster(extra_images=...)` (pause, busybox and CoreDNS come anyway).
IMAGES = (worker.ensure_lab_worker, worker.ensure_frontend, worker.ensure_operator, worker.ensure_nvsentinel, images.ensure_debian)
READY_TIMEOUT_S = 180  # a fresh node's first start of an image takes long on a busy machine
CRD_TIMEOUT_S = 120


@dataclass(frozen=True)
class WorldOptions:
    dgd_version: str = "v1beta1"
    namespace: str = "faultflow-lab"
    dgd_name: str = "llm"
    workers: int = 2
    nvsentinel: NvsentinelConfig = field(default_factory=NvsentinelConfig)


@dataclass
class RealWorld:
    cluster: RealCluster
    options: WorldOptions
    frontend_url: str  # as pods reach it: the Service's DNS name
    figures: dict[str, float] = field(default_factory=dict)

    def stop(self) -> None:
        """Nothing of the world runs outside the cluster: its pods go with `cluster.stop()`."""


def dgd_ref(options: WorldOptions) -> Ref:
    return Ref(f"{dgd_model.DGD_GROUP}/{options.dgd_version}", dgd_model.DGD_PLURAL, options.namespace, options.dgd_name)


def ensure_namespace(kube: Kube, name: str, labels: dict[str, str] | None = None) -> None:
    """A namespace, and its default ServiceAccount, which kube-controller-manager makes (pod admission needs it)."""
    try:
        kube.create(
            Ref("v1", "namespaces", None, ""), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        )
    except Conflict:
        pass
    processes.wait_until(
        lambda: kube.get_or_none(Ref("v1", "serviceaccounts", name, "default")), what=f"{name}'s default ServiceAccount", timeout_s=60
    )


def install_faultflow(kube: Kube) -> None:
    from workflows.deploy import DeployConfig, config_object

    config = DeployConfig()
    ensure_namespace(kube, config.namespace)  # not a fault target: no opt-in label
    try:
        kube.create(Ref("v1", "configmaps", config.namespace, ""), config_object(config))
    except Conflict:
        pass


def wait_monitors(kube: Kube, namespace: str, gpu_nodes: list[str]) -> None:
    """Until NVSentinel's pod on every GPU node reads its node's kernel log (Ready)."""

    def ready() -> bool | None:
        pods = kube.list(Ref("v1", "pods", namespace, ""), label_selector=nv.SHM_POD_LABEL).get("items") or []
        return True if {p["spec"].get("nodeName") for p in pods if o.pod_ready(p)} >= set(gpu_nodes) else None

    processes.wait_until(
        ready, what=f"NVSentinel SIMULATOR pods Ready on {', '.join(gpu_nodes)}", timeout_s=READY_TIMEOUT_S, interval_s=0.5
    )


def start(cluster: RealCluster, options: WorldOptions = WorldOptions()) -> RealWorld:
    """The world on `cluster` (started, with `IMAGES` imported), returned once its DGD is rolled out."""
    started = time.monotonic()
    figures: dict[str, float] = {}
    rest = cluster.rest()
    crd = crds.dgd_crd(options.dgd_version)
    crd_install.install(rest, [crd], timeout_s=CRD_TIMEOUT_S)
    crd_install.wait_served(rest, [crd], timeout_s=CRD_TIMEOUT_S)
    kube = connect(str(cluster.kubeconfig))
    install_faultflow(kube)
    ensure_namespace(kube, options.nvsentinel.namespace)
    gpu_nodes = sorted(name for name, node in cluster.nodes.items() if node.plan.gpus)
    nvsentinel.install(kube, cluster.folder, options.nvsentinel, gpu_nodes, worker.nvsentinel_image().ref)
    ensure_namespace(kube, options.namespace, {OPT_IN_LABEL: "true"})
    ensure_namespace(kube, operator_install.NAMESPACE)
    operator_install.install(kube, worker.operator_image().ref, options.dgd_version)
    world = RealWorld(
        cluster, options, f"http://{options.dgd_name}-frontend.{options.namespace}.svc.cluster.local:{FRONTEND_PORT}", figures
    )
    ref = dgd_ref(options)
    if kube.get_or_none(ref) is None:
        kube.create(Ref(ref.api_version, ref.plural, ref.namespace, ""), lab_dgd(options.dgd_version, options.dgd_name, options.workers))
    operator = Ref("apps/v1", "deployments", operator_install.NAMESPACE, operator_install.NAME)
    processes.wait_until(
        lambda: True if (kube.get(operator).get("status") or {}).get("availableReplicas") == 1 else None,
        what="the DGD operator SIMULATOR's pod available",
        timeout_s=READY_TIMEOUT_S,
        interval_s=0.5,
    )
    workers = [c.name for c in dgd_model.gpu_workers(kube.get(ref))]
    processes.wait_until(
        lambda: True if rolled_out(kube.get(ref), workers) else None,
        what=f"DGD {options.dgd_name} rolled out",
        timeout_s=READY_TIMEOUT_S,
        interval_s=0.5,
    )
    wait_monitors(kube, options.nvsentinel.namespace, gpu_nodes)
    figures["world_up_s"] = time.monotonic() - started
    return world
