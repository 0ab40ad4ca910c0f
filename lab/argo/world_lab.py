"""A real lab with Argo, faultflow installed as a user installs it, and the GPU world: what a gpu-fault
run needs end to end (issues 14, 17, 20).

    lab = world_lab.start(folder, "v4.0")     # cluster, Argo, S3, faultflow, the world
    workflow = lab.submit_and_wait("gpu-fault", lab.gpu_fault_parameters(xid=79))
    report = lab.report(workflow)
    lab.stop()

The pieces are the ones each has its own test for: `lab.nodes.cluster.RealCluster` (3 GPU nodes by
default: with 2, NVSentinel's circuit breaker (50 %) trips after one cordon), `lab.argo.install`,
`lab.argo.artifacts`, `lab.argo.faultflow` (`kubectl apply -k` of deploy/ with `images:` only) and
`lab.simulators.world` (the DGD operator and NVSentinel SIMULATORs, the workers, the frontend Service).
faultflow is installed before the world, so `kubectl apply -k` makes faultflow's own ConfigMap.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from lab.argo import artifacts, faultflow
from lab.argo import cli as argo_cli
from lab.argo import install as argo_install
from lab.nodes import cluster as real
from lab.nvsentinel_simulator import NvsentinelConfig
from lab.simulators import world as lab_world

WORKFLOW_TIMEOUT_S = 900


@dataclass
class WorldLab:
    cluster: real.RealCluster
    line: str
    repo: artifacts.ArtifactRepository
    world: lab_world.RealWorld
    figures: dict[str, float]

    @property
    def kubeconfig(self) -> Path:
        """The started cluster's admin kubeconfig (a WorldLab exists only for a started cluster)."""
        if self.cluster.kubeconfig is None:
            raise RuntimeError("the lab's cluster has not started")
        return self.cluster.kubeconfig

    def argo(self, *args: str, check: bool = True, timeout_s: float = argo_cli.TIMEOUT_S):
        return argo_cli.argo(self.kubeconfig, self.line, *args, check=check, timeout_s=timeout_s)

    def submit_and_wait(self, template: str, parameters: dict[str, str], timeout_s: float = WORKFLOW_TIMEOUT_S) -> dict:
        """`argo submit -n faultflow --from workflowtemplate/T -p … --wait` (whatever the outcome), then
        `argo get`; the returned Workflow carries `workflow_s` (submit -> done, as the user waited)."""
        flags = [arg for name, value in parameters.items() for arg in ("-p", f"{name}={value}")]
        started = time.monotonic()
        done = self.argo(
            "submit", "-n", faultflow.NAMESPACE, "--from", f"workflowtemplate/{template}", *flags, "--wait", "-o", "name",
            check=False, timeout_s=timeout_s,
        )  # fmt: skip
        name = done.stdout.split()[0] if done.stdout.split() else ""
        if not name:
            raise RuntimeError(f"argo submit printed no name (exit {done.returncode}): {done.stderr[-1500:]}")
        workflow = argo_cli.get(self.kubeconfig, self.line, faultflow.NAMESPACE, name)
        workflow["workflow_s"] = time.monotonic() - started
        return workflow

    def gpu_fault_parameters(self, xid: int = 79, **more: str) -> dict[str, str]:
        """gpu-fault's parameters for the world's DGD, with windows sized for the lab."""
        options = self.world.options
        return {
            "namespace": options.namespace,
            "target": f"dgd/{options.dgd_name}",
            "dgd-version": options.dgd_version,
            "xid": str(xid),
            "nvsentinel-namespace": options.nvsentinel.namespace,
            "frontend-url": self.world.frontend_url,
            "cordon-timeout": "120s",
            "eviction-timeout": "180s",
            "recovery-deadline": "240",
            "window": "5",
            **more,
        }

    def report(self, workflow: dict) -> dict:
        """The run's report.json, from the artifact repository (where the report step put it)."""
        key = f"faultflow/{faultflow.NAMESPACE}/{workflow['metadata']['uid']}/report/report.json"
        return json.loads(self.repo.s3.get_object(self.repo.bucket, key))

    def stop(self) -> dict:
        self.world.stop()
        return self.cluster.stop()


def images(line: str) -> tuple:
    """Every image the lab's nodes need: Argo's, faultflow's three, the world's."""
    return (*argo_install.images_for(line), *faultflow.PRODUCT_BUILDS, *lab_world.IMAGES)


# The world where gpu-fault's defaults point: the shipped RBAC binds the step accounts in namespace
# `dynamo`, and the default frontend-url is http://vllm-agg-frontend.dynamo.svc:8000.
# NVSentinel as its chart runs it, in two respects the run depends on:
# * the syslog monitor polls the journal every 15 s (the simulator's default is 0.2 s);
# * node-drainer skips faultflow's namespace. With `userNamespaces: *` it evicts every pod on the
#   quarantined node, inject-xid's own pod too while its wait container uploads the outputs; Argo
#   then re-creates that pod, which injects the XID a second time (deduplicated by NVSentinel) and
#   reports that second, later fault time: wait-for-cordon finds the quarantine older than the fault.
OPTIONS = lab_world.WorldOptions(
    namespace="dynamo",
    dgd_name="vllm-agg",
    nvsentinel=NvsentinelConfig(
        detect_delay_s=15.0,
        system_namespaces=NvsentinelConfig.system_namespaces.rstrip(")$") + f"|{faultflow.NAMESPACE})$",
    ),
)


def start(
    folder: Path, line: str = "v4.0", gpu_nodes: int = 3, gpus_per_node: int = 1, options: lab_world.WorldOptions = OPTIONS
) -> WorldLab:
    """The lab, up; on a failure what was started is stopped before the error goes on.

    One GPU per node by default: gpu-fault faults one GPU (`gpu`, a host minor, default 0) and the
    shim fails only the calls of a worker holding that GPU; with more GPUs per node the device plugin
    may give the node's worker another one, and the CUDA fault misses it."""
    plans = real.plan_nodes(gpu_nodes=gpu_nodes, cpu_nodes=1, gpus_per_node=gpus_per_node)
    cluster = real.RealCluster(folder / "lab", plans, extra_images=images(line))
    try:
        cluster.start()
        argo = argo_install.install(cluster, line)
        repo = artifacts.start(cluster)
        replaced = faultflow.product_images()
        installed = faultflow.install(
            cluster,
            repo,
            folder / "overlay",
            replaced,
            target_namespaces=(options.namespace,),
            nvsentinel_namespace=options.nvsentinel.namespace,
        )
        world = lab_world.start(cluster, options)
    except BaseException:
        cluster.stop()
        raise
    return WorldLab(cluster, line, repo, world, {**cluster.figures, **argo.figures, **installed.figures, **world.figures})
