"""Install faultflow into a real lab with Argo (lab.argo.install) the way the README tells a user to.

* The namespaces the RBAC binds into exist first (the target namespace, opted in with
  `faultflow.dev/allow-faults=true`, and NVSentinel's).
* `kubectl apply -k` of an overlay over the committed `deploy/` that only sets kustomize `images:` to
  the lab's image names: the base, its RBAC, namespace, admission policy, WorkflowTemplates and
  CronWorkflows are applied exactly as shipped.
* `deploy/argo/workflow-controller-configmap.yaml` merged into Argo's own controller ConfigMap.
* faultflow's namespace gets the lab's S3 repository as its default artifact repository
  (lab.argo.artifacts), which the templates' key-only artifacts need.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab import processes
from lab.argo import artifacts, manifests
from lab.argo.apply import apply
from lab.argo.kubectl import kubectl
from lab.images import build as images
from lab.images import product
from lab.nodes.cluster import RealCluster
from steps.run.guardrails import OPT_IN_LABEL

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NAMESPACE = "faultflow"
# The executor's token Secret (deploy/rbac/executor.yaml) is filled by kube-controller-manager.
EXECUTOR_TOKEN_SECRET = "faultflow-executor.service-account-token"
READY_TIMEOUT_S = 120
# The product's images a faultflow installation names (the overlay's `images:`), and their lab builds.
PRODUCT_BUILDS = (product.ensure_steps, product.ensure_shim, product.ensure_node_agent)


def product_images() -> dict[str, images.Image]:
    """Shipped image name -> the lab's build of it: every image `deploy/` names, so no pod of the
    installation asks for an image the nodes lack (the node agent's were ImagePullBackOff)."""
    return {
        "faultflow-steps": product.steps_image(),
        "faultflow-shim": product.shim_image(),
        "faultflow-node-agent": product.node_agent_image(),
    }


@dataclass
class Installation:
    namespace: str
    overlay: Path
    figures: dict[str, float] = field(default_factory=dict)


def overlay(folder: Path, replaced: dict[str, images.Image]) -> Path:
    """A kustomization over deploy/ whose only change is `images:` (shipped name -> the lab's image)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, image in replaced.items():
        repository, _, tag = image.ref.rpartition(":")
        entries.append({"name": name, "newName": repository, "newTag": tag})
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, folder)],
        "images": entries,
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return folder


def install(
    cluster: RealCluster,
    repo: artifacts.ArtifactRepository,
    folder: Path,
    replaced: dict[str, images.Image],
    target_namespaces: tuple[str, ...] = ("dynamo",),
    nvsentinel_namespace: str = "nvsentinel",
) -> Installation:
    """faultflow installed into `cluster` (Argo already installed); returns once its executor token is filled."""
    started = time.monotonic()
    rest = cluster.rest()
    for namespace in target_namespaces:
        apply(rest, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {OPT_IN_LABEL: "true"}}})
    apply(rest, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": nvsentinel_namespace}})
    if cluster.kubeconfig is None:
        raise RuntimeError("lab.argo.faultflow.install needs a started RealCluster")
    path = overlay(folder, replaced)
    kubectl(cluster.kubeconfig, "apply", "-k", str(path))
    installation = Installation(NAMESPACE, path, {"faultflow_apply_s": time.monotonic() - started})
    configure_argo(cluster)
    artifacts.configure_namespace(rest, repo, NAMESPACE)
    secret = f"/api/v1/namespaces/{NAMESPACE}/secrets/{EXECUTOR_TOKEN_SECRET}"
    processes.wait_until(
        lambda: True if (rest.get_or_none(secret) or {}).get("data", {}).get("token") else None,
        what=f"{EXECUTOR_TOKEN_SECRET} filled by the token controller",
        timeout_s=READY_TIMEOUT_S,
        interval_s=0.2,
    )
    installation.figures["faultflow_install_s"] = time.monotonic() - started
    return installation


def configure_argo(cluster: RealCluster) -> None:
    """Merge faultflow's controller settings (deploy/argo/) into Argo's ConfigMap, as the README says;
    the controller watches that ConfigMap and applies it without a restart."""
    rest = cluster.rest()
    ours = yaml.safe_load((DEPLOY / "argo" / "workflow-controller-configmap.yaml").read_text())
    path = f"/api/v1/namespaces/{manifests.NAMESPACE}/configmaps/{ours['metadata']['name']}"
    current = rest.get(path)
    current["data"] = {**(current.get("data") or {}), **ours["data"]}
    rest.put(path, current)
