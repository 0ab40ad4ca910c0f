"""Install Argo Workflows into a real lab (lab.nodes.RealCluster) from its own manifests.

The controller runs as Argo ships it: the `workflow-controller` Deployment in namespace `argo`, a pod
on a lab node, under Argo's own ServiceAccount and RBAC. That, not a process in the hub, because the
pod is what users run (the RBAC as shipped is exercised, its in-cluster config, its executor-image
flag), and because its health port :6060 binds every interface: in a pod it binds the pod's network
namespace only. The lab's images must be on the nodes first: pass `images_for(line)` to the
RealCluster's `extra_images`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from lab import crd_install, processes, tools
from lab.argo import manifests
from lab.argo.apply import apply
from lab.images import build as images
from lab.nodes.cluster import RealCluster
from lab.rest import ApiError, Rest

CONTROLLER_READY_TIMEOUT_S = 120
# The kinds of Argo's install in kustomize's legacy sort order (dependencies before workloads).
_APPLY_ORDER = (
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "PriorityClass",
    "Deployment",
)
# Argo's full CRDs are megabytes of schema; on a loaded 2-core machine the API server takes minutes.
CRD_TIMEOUT_S = 300


@dataclass
class Argo:
    """An Argo line installed in a lab."""

    line: str  # "v4.0" or "v3.7"
    namespace: str = manifests.NAMESPACE
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def cli(self) -> tools.GoTool:
        return tools.ARGO_CLIS[self.line]


def images_for(line: str) -> tuple[Callable[[], images.Image], ...]:
    """The image builders a RealCluster needs for this line (`extra_images=`)."""
    argo = tools.ARGO_LINES[line]
    return tuple((lambda tool=tool: images.ensure_argo(tool)) for tool in (argo.executor, argo.controller))


def install(cluster: RealCluster, line: str = "v4.0", workflow_namespaces: tuple[str, ...] = ()) -> Argo:
    """Argo's cluster install with the lab's changes (lab.argo.manifests), the executor's RBAC in each
    of `workflow_namespaces` (created if missing); returns once the controller's pod is ready."""
    started = time.monotonic()
    rest = cluster.rest()
    objects = manifests.for_lab(manifests.install_objects(line), manifests.images_of(line))
    crds = [o for o in objects if o["kind"] == "CustomResourceDefinition"]
    for crd in crds:
        _create_crd(rest, crd)
    crd_install.wait_established(rest, {crd["metadata"]["name"] for crd in crds}, timeout_s=CRD_TIMEOUT_S)
    argo_figures = {"argo_crds_s": time.monotonic() - started}
    for namespace in (manifests.NAMESPACE, *workflow_namespaces):
        apply(rest, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    # In kustomize's output order (what `kubectl apply -k` creates first): a pod of the Deployment
    # admitted before its ServiceAccount or PriorityClass exists is refused and retried with backoff.
    for obj in sorted((o for o in objects if o["kind"] != "CustomResourceDefinition"), key=lambda o: _APPLY_ORDER.index(o["kind"])):
        apply(rest, obj)
    for namespace in workflow_namespaces:
        for obj in manifests.executor_rbac(line, namespace):
            apply(rest, obj)
        # Pods of the namespace need its default ServiceAccount, which kube-controller-manager makes.
        account = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
        processes.wait_until(partial(rest.get_or_none, account), what=f"ServiceAccount default in {namespace}", timeout_s=60)
    argo = Argo(line, figures=argo_figures)
    processes.wait_until(
        lambda: _controller_ready(rest), what="workflow-controller pod ready", timeout_s=CONTROLLER_READY_TIMEOUT_S, interval_s=0.2
    )
    argo.figures["argo_install_s"] = time.monotonic() - started
    return argo


def _create_crd(rest: Rest, crd: dict) -> None:
    """Create one CRD, one at a time: on 2 busy cores the API server needs tens of seconds to take one
    of Argo's full CRDs (megabytes of schema), and concurrent ones only slow each other down."""
    path = f"{crd_install.CRD_PATH}/{crd['metadata']['name']}"
    try:
        rest.call("POST", crd_install.CRD_PATH, crd, timeout_s=CRD_TIMEOUT_S)
    except ApiError as err:
        if err.status != 409:
            raise
    except TimeoutError:
        # The server may still finish the create it timed out on: then it is there.
        processes.wait_until(
            lambda: rest.get_or_none(path), what=f"CRD {crd['metadata']['name']} created", timeout_s=CRD_TIMEOUT_S, interval_s=1
        )


def controller_pod(rest: Rest) -> dict | None:
    pods = rest.get(f"/api/v1/namespaces/{manifests.NAMESPACE}/pods?labelSelector=app%3Dworkflow-controller")["items"]
    return pods[0] if pods else None


def _controller_ready(rest: Rest) -> bool | None:
    pod = controller_pod(rest)
    if pod is None:
        return None
    statuses = pod.get("status", {}).get("containerStatuses", [])
    for status in statuses:
        terminated = status.get("state", {}).get("terminated") or status.get("lastState", {}).get("terminated")
        if terminated:
            raise processes.NotReady(f"workflow-controller exited: {terminated}")
    return True if statuses and all(s.get("ready") for s in statuses) else None
