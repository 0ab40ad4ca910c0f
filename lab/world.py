"""The lab world: the control plane plus everything `faultflow lab up` puts around it.

* the envtest control plane (real etcd + kube-apiserver, real CRDs), kubeconfig at `.lab/kubeconfig`;
* simulated nodes (`lab.gpu_nodes`): GPU nodes `gpu-0…` and a CPU node `cpu-0`, each with a pod CIDR;
* namespace `faultflow-lab`, opted in (`faultflow.dev/allow-faults=true`), with a DGD (a frontend and
  GPU workers, `lab.dgd_examples`) at the cluster's DGD version;
* NVSentinel's presence (namespace, circuit breaker, syslog-health-monitor pods) and its simulator;
* the kubelet simulator (runs the pods) and the DGD operator simulator (makes them);
* a real Prometheus (`lab.prometheus`) scraping the NVSentinel simulator's `/metrics` every second.

`World.start()` returns once the DGD is rolled out and its frontend answers; `World.stop()` stops the
simulators' processes and the control plane.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.controlplane import Cluster, ClusterSpec, start_cluster
from lab.dgd_examples import example_dgd
from lab.dgd_operator_simulator import URL_ANNOTATION, DgdOperatorSimulator
from lab.gpu_nodes import NodeSpec, create_nodes, prepare_node_root
from lab.kubelet_logs import KubeletLogSimulator
from lab.kubelet_simulator import KubeletConfig, KubeletSimulator, now
from lab.layout import LabDir
from lab.native_build import NATIVE, REPO, SHIM
from lab.nvsentinel_simulator import NvsentinelConfig, NvsentinelSimulator
from lab.processes import wait_until
from lab.prometheus import LabPrometheus
from lab.seeds import ensure_seed
from steps.kube.client import Kube, Ref, connect
from steps.run.guardrails import OPT_IN_LABEL
from steps.workload import dynamo as dgd_model
from steps.workload import shim_patch
from steps.workload.rollout import rolled_out

NATIVE_BUILD = REPO / "build" / "lab-native"
SHIM_IMAGE_ROOT = "/opt/faultflow"  # images/shim/Dockerfile: install.sh and the .so live here
READY_TIMEOUT_S = 120
POD_NETWORK_PREFIX = "10.244"  # the lab's cluster CIDR is 10.244.0.0/16 (a common default)


@dataclass(frozen=True)
class LabOptions:
    dgd_version: str = "v1beta1"
    gpu_nodes: int = 3
    gpus_per_node: int = 8
    workers: int = 2
    namespace: str = "faultflow-lab"
    dgd_name: str = "llm"
    nvsentinel: NvsentinelConfig = field(default_factory=NvsentinelConfig)

    def node_specs(self) -> list[NodeSpec]:
        """GPU nodes gpu-0… and cpu-0, each with its own /24 of the pod network (as kube-controller-manager's
        node IPAM carves --cluster-cidr into per-node ranges)."""
        names = [(f"gpu-{i}", self.gpus_per_node) for i in range(self.gpu_nodes)] + [("cpu-0", 0)]
        return [NodeSpec(name, gpus, pod_cidr=f"{POD_NETWORK_PREFIX}.{index}.0/24") for index, (name, gpus) in enumerate(names)]


def build_driver() -> Path:
    """The driver simulator library (incremental make; the shim is built by `make shim`)."""
    subprocess.run(["make", "-s", "-C", str(REPO / "shim")], check=True)
    target = NATIVE_BUILD / "driver" / "libcuda.so.1"
    subprocess.run(["make", "-s", "-C", str(NATIVE), f"BUILD={NATIVE_BUILD}", str(target)], check=True)
    return target.parent


def prepare_shim_image(lab: LabDir) -> Path:
    """The shim image's /opt/faultflow as a directory: its install.sh and the built library."""
    root = lab.images / "shim"
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "images" / "shim" / "install.sh", root / "install.sh")
    shutil.copy2(SHIM, root / shim_patch.LIB_NAME)
    return root


def install_faultflow(kube: Kube) -> None:
    """faultflow's own namespace and ConfigMap faultflow-config, as `kubectl apply -k deploy` makes them:
    the ledgers live there, the steps read the installed images and toggle directory from it."""
    from workflows.deploy import DeployConfig, config_object

    config = DeployConfig()
    if kube.get_or_none(Ref("v1", "namespaces", None, config.namespace)) is None:  # not a fault target: no opt-in label
        kube.create(Ref("v1", "namespaces", None, ""), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.namespace}})
        kube.create(
            Ref("v1", "serviceaccounts", config.namespace, ""),
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        )
    body = config_object(config)
    if kube.get_or_none(Ref("v1", "configmaps", config.namespace, body["metadata"]["name"])) is None:
        kube.create(Ref("v1", "configmaps", config.namespace, ""), body)


def create_namespace(kube: Kube, name: str) -> None:
    if kube.get_or_none(Ref("v1", "namespaces", None, name)) is None:
        kube.create(
            Ref("v1", "namespaces", None, ""),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {OPT_IN_LABEL: "true"}}},
        )
        # No controller-manager here to create it, and pod admission requires it.
        kube.create(Ref("v1", "serviceaccounts", name, ""), {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})


def dgd_ref(version: str, namespace: str, name: str) -> Ref:
    return Ref(f"{dgd_model.DGD_GROUP}/{version}", dgd_model.DGD_PLURAL, namespace, name)


@dataclass
class World:
    lab: LabDir
    options: LabOptions = field(default_factory=LabOptions)
    cluster: Cluster | None = None
    kubelet: KubeletSimulator | None = None
    operator: DgdOperatorSimulator | None = None
    nvsentinel: NvsentinelSimulator | None = None
    frontend_url: str = ""
    logs: KubeletLogSimulator | None = None
    prometheus: LabPrometheus | None = None

    def start(self) -> dict:
        """Everything up and the DGD serving; returns what was started (the lab's state record)."""
        started = time.monotonic()
        opts = self.options
        for sub in (self.lab.logs, self.lab.images):
            sub.mkdir(parents=True, exist_ok=True)
        driver_dir = build_driver()
        shim_root = prepare_shim_image(self.lab)
        specs = opts.node_specs()
        for index, spec in enumerate(specs):
            prepare_node_root(self.lab.node_root(spec.name), spec, index)
        # The cluster folder is the lab directory itself: its kubeconfig lands at .lab/kubeconfig.
        spec = ClusterSpec(dgd_version=opts.dgd_version)
        self.cluster = start_cluster(spec, self.lab.root, seed=ensure_seed(spec, spec.crds()))
        kube = connect(str(self.lab.kubeconfig))
        # pods/log through the API server (inject-cuda-shim checks the shim's marker in worker logs).
        self.logs = KubeletLogSimulator(
            self.lab.root / "pod-logs", self.cluster.pki, resolve=self._pod_log, running=self._pod_running
        ).__enter__()
        create_nodes(kube, specs, now(), self.logs.port)
        create_namespace(kube, opts.namespace)
        install_faultflow(kube)
        gpu_nodes = [s.name for s in specs if s.is_gpu]
        self.nvsentinel = NvsentinelSimulator(connect(str(self.lab.kubeconfig)), self.lab, gpu_nodes, opts.nvsentinel)
        self.nvsentinel.install()
        self.nvsentinel.start().wait_first_poll()
        self.prometheus = LabPrometheus(self.lab.root / "prometheus").start({"nvsentinel": self.nvsentinel.serve_metrics()})
        config = KubeletConfig(
            lab=self.lab,
            nodes=frozenset(s.name for s in specs),
            driver_dir=driver_dir,
            pod_cidrs={s.name: s.pod_cidr for s in specs},
            image_paths={SHIM_IMAGE_ROOT: shim_root},
            image_env={"FAULTFLOW_SHIM_SOURCE": str(shim_root / shim_patch.LIB_NAME)},
        )
        self.kubelet = KubeletSimulator(connect(str(self.lab.kubeconfig)), config).start()
        self.operator = DgdOperatorSimulator(connect(str(self.lab.kubeconfig)), opts.dgd_version).start()
        ref = dgd_ref(opts.dgd_version, opts.namespace, opts.dgd_name)
        if kube.get_or_none(ref) is None:
            body = example_dgd(opts.dgd_version, opts.dgd_name, worker_replicas=opts.workers)
            kube.create(ref, body)
        workers = [c.name for c in dgd_model.gpu_workers(kube.get(ref))]
        wait_until(
            lambda: True if rolled_out(kube.get(ref), workers) else None, what=f"DGD {opts.dgd_name} rolled out", timeout_s=READY_TIMEOUT_S
        )
        service = kube.get(Ref("v1", "services", opts.namespace, f"{opts.dgd_name}-frontend"))
        self.frontend_url = service["metadata"]["annotations"][URL_ANNOTATION]
        wait_until(lambda: True if _serves(self.frontend_url) else None, what="frontend answering", timeout_s=READY_TIMEOUT_S)
        return {
            "dir": str(self.lab.root),
            "server": self.cluster.server,
            "kubeconfig": str(self.lab.kubeconfig),
            "frontend_url": self.frontend_url,
            "namespace": opts.namespace,
            "dgd": opts.dgd_name,
            "dgd_version": opts.dgd_version,
            "nodes": [asdict(s) for s in specs],
            "nvsentinel_namespace": opts.nvsentinel.namespace,
            "nvsentinel_dedup_window_s": opts.nvsentinel.dedup_window_s,
            "prometheus_url": self.prometheus.url,
            "processes": {
                "etcd": self.cluster.etcd.process.popen.pid,
                "kube-apiserver": self.cluster.process.popen.pid,
                "prometheus": self.prometheus.process.popen.pid if self.prometheus.process else None,
            },
            "simulators": ["kubelet", "kubelet-logs", "dgd-operator", "nvsentinel"],
            "up_s": round(time.monotonic() - started, 2),
        }

    def _pod_log(self, namespace: str, pod: str, container: str) -> Path | None:
        """Every container of a lab pod logs to the pod's one file."""
        path = self.lab.pod_log(namespace, pod)
        return path if path.is_file() else None

    def _pod_running(self, namespace: str, pod: str, container: str) -> bool:
        """A follow stream of a lab pod's log lasts while the kubelet simulator runs the pod."""
        return self.kubelet is not None and self.kubelet.running(namespace, pod)

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        for simulator in (self.operator, self.nvsentinel):
            if simulator is not None:
                simulator.stop()
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.logs is not None:
            self.logs.__exit__(None, None, None)
        if self.cluster is not None:
            self.cluster.stop()


def _serves(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False
