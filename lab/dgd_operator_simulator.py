"""DGD OPERATOR SIMULATOR: turns DynamoGraphDeployments into Pods and reports DGD status, as Dynamo's
operator (with its default Deployment workload provider) and the scheduler would.

What it copies (shared/research/hera_argo_dgd.md §3.5–3.6, dynamo_inventory.md "labels"):

* one Deployment-like set of pods per component — v1alpha1 `spec.services.<name>` (pod spec from
  `extraPodSpec`, main container `extraPodSpec.mainContainer` named `main`, `resources.limits.gpu` →
  `nvidia.com/gpu`) or v1beta1 `spec.components[]` (`podTemplate`) — `replicas` pods each;
* the operator's pod labels: `nvidia.com/dynamo-graph-deployment-name`, `nvidia.com/dynamo-component`,
  `nvidia.com/dynamo-component-type`, `nvidia.com/dynamo-sub-component-type` (when set), plus the
  ReplicaSet's `pod-template-hash` of the component's spec;
* a changed component spec (the shim's init container, env and volumes added or removed) rolls that
  component: new pods first, old ones deleted once the new ones are Ready (surge, as a Deployment);
* pods that are deleted, evicted or Failed are replaced; new pods are bound (the Binding subresource,
  as the scheduler does) to a Ready, schedulable node whose NoSchedule taints they tolerate — GPU
  workers only to nodes with free `nvidia.com/gpu`, spread over nodes; other components prefer nodes
  without GPUs;
* the frontend's ClusterIP Service `<dgd>-frontend` (port 8000), annotated with the loopback URL the
  lab serves it on (`lab.faultflow.dev/url`);
* status: `observedGeneration`, condition `Ready`, `state`, and per component (`services` for v1alpha1,
  `components` for v1beta1) `componentKind`, `componentName`, `replicas`, `updatedReplicas`,
  `readyReplicas`, `availableReplicas` — what `steps.workload.rollout.rolled_out` waits for.

A controller loop: informers on DGDs, pods and nodes mark the world dirty; one thread reconciles
every DGD from fresh lists (a periodic resync covers anything an event missed).
"""

from __future__ import annotations

import copy
import secrets
import threading

from lab.informer import start_informer
from lab.kubelet_simulator import PORT_ANNOTATION, now
from lab.processes import free_port
from lab.simulators.dgd_plan import GPU_RESOURCE, HASH_LABEL, ComponentPlan, component_name, plan, pod_labels, write_status
from steps.errors import InfrastructureError
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref
from steps.workload.dynamo import (
    COMPONENT_LABEL,
    COMPONENT_TYPE_LABEL,
    DGD_GROUP,
    DGD_NAME_LABEL,
    DGD_PLURAL,
    FRONTEND_TYPE,
)

URL_ANNOTATION = "lab.faultflow.dev/url"
FRONTEND_PORT = 8000
RESYNC_S = 2.0


def new_pod(dgd: dict, comp: ComponentPlan, frontend_port: int | None) -> dict:
    name = dgd["metadata"]["name"]
    annotations = dict(comp.template["metadata"]["annotations"])
    if comp.type == FRONTEND_TYPE and frontend_port:
        annotations[PORT_ANNOTATION] = str(frontend_port)
    spec = copy.deepcopy(comp.template["spec"])
    spec.setdefault("restartPolicy", "Always")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{component_name(name, comp.name)}-{comp.hash[:8]}-{secrets.token_hex(3)}"[:63],
            "namespace": dgd["metadata"]["namespace"],
            "labels": pod_labels(name, comp),
            "annotations": annotations,
        },
        "spec": spec,
    }


def tolerates(pod_spec: dict, taints: list[dict]) -> bool:
    tolerations = pod_spec.get("tolerations") or []
    for taint in taints:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(
            t.get("operator") == "Exists"
            and (not t.get("key") or t.get("key") == taint.get("key"))
            or (t.get("key") == taint.get("key") and t.get("value") == taint.get("value"))
            for t in tolerations
        ):
            return False
    return True


def choose_node(comp: ComponentPlan, nodes: list[dict], pods: list[dict], prefer: str | None = None) -> str | None:
    """The scheduler's choice: feasible nodes (Ready, schedulable, taints tolerated, GPUs free), then
    `prefer` (the node of the pod being replaced), then the one with fewest pods of this component,
    then fewest pods, then by name."""
    used_gpus: dict[str, int] = {}
    per_node: dict[str, int] = {}
    same: dict[str, int] = {}
    for pod in pods:
        node = pod["spec"].get("nodeName")
        if not node or o.finished(pod):
            continue
        per_node[node] = per_node.get(node, 0) + 1
        if o.labels(pod).get(COMPONENT_LABEL) == comp.name:
            same[node] = same.get(node, 0) + 1
        for container in pod["spec"].get("containers") or []:
            used_gpus[node] = used_gpus.get(node, 0) + int(((container.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE) or 0)
    feasible = []
    for node in nodes:
        name = node["metadata"]["name"]
        if o.unschedulable(node) or not o.node_ready(node):
            continue
        if not tolerates(comp.template["spec"], o.spec(node).get("taints") or []):
            continue
        capacity = int((o.status(node).get("allocatable") or {}).get(GPU_RESOURCE) or 0)
        if comp.gpus and capacity - used_gpus.get(name, 0) < comp.gpus:
            continue
        if comp.is_gpu_worker and not capacity:
            continue
        # Components without GPUs keep off GPU nodes when they can (GPU nodes are for workers).
        feasible.append((bool(capacity) and not comp.is_gpu_worker, name != prefer, same.get(name, 0), per_node.get(name, 0), name))
    return min(feasible)[-1] if feasible else None


class DgdOperatorSimulator:
    def __init__(self, kube: Kube, dgd_version: str, namespace: str | None = None, nodes: frozenset[str] | None = None):
        """Watches DGDs of one namespace, or of all (`namespace` None) as the operator does by default;
        schedules to `nodes` (None: every node, as the scheduler does)."""
        self.kube = kube
        self.namespace = namespace
        self.node_names = nodes
        self.dgds = Ref(f"{DGD_GROUP}/{dgd_version}", DGD_PLURAL, namespace, "")
        self.pods = Ref("v1", "pods", namespace, "")
        self.stop_event = threading.Event()
        self.dirty = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []  # last reconcile failures (for status / debugging)

    def start(self) -> DgdOperatorSimulator:
        mark = lambda _kind, _obj: self.dirty.set()  # noqa: E731 — every change means "reconcile"
        self.threads = [
            start_informer("operator-dgds", self.kube, self.dgds, mark, self.stop_event),
            start_informer("operator-pods", self.kube, self.pods, mark, self.stop_event, label_selector=DGD_NAME_LABEL),
            start_informer("operator-nodes", self.kube, Ref("v1", "nodes", None, ""), mark, self.stop_event),
        ]
        loop = threading.Thread(target=self._loop, name="operator-reconcile", daemon=True)
        loop.start()
        self.threads.append(loop)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.dirty.set()

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            self.dirty.wait(RESYNC_S)
            self.dirty.clear()
            if self.stop_event.is_set():
                return
            try:
                self.reconcile_all()
                self.errors = []
            except (InfrastructureError, NotFound, Conflict) as error:
                self.errors = [str(error)]
                self.dirty.set()
                self.stop_event.wait(0.2)  # back off before retrying a failed reconcile

    def reconcile_all(self) -> None:
        dgds = self.kube.list(self.dgds).get("items") or []
        pods = self.kube.list(self.pods, label_selector=DGD_NAME_LABEL).get("items") or []
        nodes = [
            n
            for n in self.kube.list(Ref("v1", "nodes", None, "")).get("items") or []
            if self.node_names is None or n["metadata"]["name"] in self.node_names
        ]
        failures = []
        for dgd in dgds:
            if o.terminating(dgd):
                continue
            ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
            owned = [p for p in pods if p["metadata"]["namespace"] == ns and o.labels(p).get(DGD_NAME_LABEL) == name]
            try:
                self.reconcile(dgd, owned, pods, nodes)
            except (InfrastructureError, NotFound, Conflict) as error:
                failures.append(f"{ns}/{name}: {error}")  # one broken DGD must not starve the others
        if failures:
            raise InfrastructureError("; ".join(failures))
        live = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in dgds}
        for pod in pods:  # pods of a deleted DGD (no garbage collector here does it)
            key = (pod["metadata"]["namespace"], o.labels(pod).get(DGD_NAME_LABEL))
            if key not in live and not o.terminating(pod):
                self._delete(pod)

    def reconcile(self, dgd: dict, owned: list[dict], all_pods: list[dict], nodes: list[dict]) -> None:
        plans = plan(dgd)
        port = self._frontend_service(dgd) if any(c.type == FRONTEND_TYPE for c in plans) else None
        status_components = {}
        all_ready = True
        for comp in plans:
            mine = [p for p in owned if o.labels(p).get(COMPONENT_LABEL) == comp.name and not o.terminating(p)]
            for pod in mine:
                if o.finished(pod):
                    self._delete(pod)
            mine = [p for p in mine if not o.finished(p)]
            current = [p for p in mine if o.labels(p).get(HASH_LABEL) == comp.hash]
            old = [p for p in mine if p not in current]
            for pod in current:
                if not pod["spec"].get("nodeName"):
                    self._bind(pod, comp, nodes, all_pods)
            # A rollout replaces pods where they were (on a full GPU cluster the GPU the old pod frees is
            # the only place the new one fits), so a run's target node keeps its shimmed workers.
            vacating = [p["spec"].get("nodeName") for p in old if p["spec"].get("nodeName")]
            for index in range(comp.replicas - len(current)):
                prefer = vacating[index] if index < len(vacating) else None
                pod = self._create(dgd, comp, port, nodes, all_pods, prefer)
                if pod is not None:
                    current.append(pod)
                    all_pods.append(pod)
            surplus = sorted(current, key=lambda p: (o.pod_ready(p), o.meta(p).get("creationTimestamp", "")))
            for pod in surplus[: max(0, len(current) - comp.replicas)]:
                self._delete(pod)
                current.remove(pod)
            ready = [p for p in current if o.pod_ready(p)]
            if len(ready) >= comp.replicas:
                for pod in old:  # the new pods serve: the old ones go (a Deployment's rollout)
                    self._delete(pod)
                old = []
            done = len(ready) == comp.replicas and not old
            all_ready = all_ready and done
            status_components[comp.name] = {
                "componentKind": "Deployment",
                "componentName": component_name(dgd["metadata"]["name"], comp.name),
                "replicas": comp.replicas,
                "updatedReplicas": len(current),
                "readyReplicas": len(ready),
                "availableReplicas": len(ready),
            }
        write_status(self.kube, dgd, status_components, all_ready, "component pods", now())

    # --- API writes --------------------------------------------------------------------------------
    def _create(
        self, dgd: dict, comp: ComponentPlan, port: int | None, nodes: list[dict], pods: list[dict], prefer: str | None = None
    ) -> dict | None:
        body = new_pod(dgd, comp, port)
        created = self.kube.create(Ref("v1", "pods", body["metadata"]["namespace"], ""), body)
        self._bind(created, comp, nodes, pods, prefer)
        return created

    def _bind(self, pod: dict, comp: ComponentPlan, nodes: list[dict], pods: list[dict], prefer: str | None = None) -> None:
        node = choose_node(comp, nodes, pods, prefer)
        if node is None:
            return  # stays Pending; a node event triggers another attempt
        meta = pod["metadata"]
        self.kube.request(
            "POST",
            Ref("v1", "pods", meta["namespace"], meta["name"]).path() + "/binding",
            body={
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": meta["name"], "uid": meta["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            },
        )
        pod["spec"]["nodeName"] = node

    def _delete(self, pod: dict) -> None:
        self.kube.delete(Ref("v1", "pods", pod["metadata"]["namespace"], pod["metadata"]["name"]))

    def _frontend_service(self, dgd: dict) -> int:
        """The frontend's Service (created once); the loopback port the lab serves it on."""
        ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        ref = Ref("v1", "services", ns, f"{name}-frontend")
        service = self.kube.get_or_none(ref)
        if service is None:
            port = free_port()
            service = self.kube.create(
                ref,
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": ref.name,
                        "namespace": ns,
                        "labels": {DGD_NAME_LABEL: name},
                        "annotations": {URL_ANNOTATION: f"http://127.0.0.1:{port}"},
                    },
                    "spec": {
                        "selector": {DGD_NAME_LABEL: name, COMPONENT_TYPE_LABEL: FRONTEND_TYPE},
                        "ports": [{"name": "http", "port": FRONTEND_PORT, "targetPort": FRONTEND_PORT}],
                    },
                },
            )
        return int(service["metadata"]["annotations"][URL_ANNOTATION].rsplit(":", 1)[1])
