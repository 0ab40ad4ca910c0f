"""DGD OPERATOR SIMULATOR for the real lab cluster: DynamoGraphDeployments become Deployments and
Services that the real control plane runs (deployment and ReplicaSet controllers, kube-scheduler,
the kubelets, the endpoint-slice controller, the garbage collector).

What it copies of Dynamo's operator with its default (Deployment) workload provider
(shared/research/hera_argo_dgd.md §3.5–3.6, dynamo_inventory.md "labels"):

* one Deployment `<dgd>-<component>` per component, `replicas` pods, its pod template from the DGD
  (v1alpha1 `extraPodSpec`/`mainContainer`/`resources.limits.gpu`, v1beta1 `podTemplate`:
  `lab.simulators.dgd_plan.plan`), owned by the DGD; the pods carry Dynamo's labels
  (`nvidia.com/dynamo-graph-deployment-name`, `-component`, `-component-type`, `-sub-component-type`);
* what the operator adds to the main container: for GPU workers the system port 9090 (`DYN_SYSTEM_PORT`)
  and a readinessProbe on its `/health`; for the frontend port 8000, a readinessProbe, and where its
  workers are (FAULTFLOW_WORKERS: the workers' headless Service names, the discovery Dynamo does
  through EndpointSlices);
* a changed DGD (the shim's init container, env and volumes added or removed) changes the pod
  template, and the deployment controller rolls it (surge first, as Dynamo's Deployments do);
* Services: `<dgd>-frontend` (ClusterIP, port 8000) and, per GPU worker component, a headless
  `<dgd>-<component>` whose DNS names are the Ready workers;
* DGD status: `observedGeneration`, condition `Ready` (every Deployment complete: observed, updated,
  available, no old pods), `state`, and per component (`services` for v1alpha1, `components` for
  v1beta1) `componentKind`, `componentName`, `replicas`, `updatedReplicas`, `readyReplicas`,
  `availableReplicas` — what `steps.workload.rollout.rolled_out` waits for.

Placement, restarts, evicted pods' replacements and rollouts are the real controllers' work, not
this simulator's (the old lab's simulator bound pods itself: `lab.dgd_operator_simulator`).
A controller loop: informers on DGDs and the Deployments mark the world dirty; one thread reconciles
every DGD (a periodic resync covers anything an event missed).

It runs where Dynamo's operator runs: a Deployment (`lab.simulators.operator_install`), in-cluster
credentials of its ServiceAccount, from the faultflow-lab-operator image (the steps image plus this
module, `dgd_plan` and `lab.informer`: it imports nothing else of lab/).

    python -m lab.simulators.dgd_operator --dgd-version v1beta1 [--namespace NS] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import json
import signal
import sys
import threading

from lab.informer import start_informer
from lab.simulators.dgd_plan import HASH_LABEL, ComponentPlan, component_name, plan, pod_labels, write_status
from steps.errors import InfrastructureError
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref, connect
from steps.workload.dynamo import COMPONENT_LABEL, COMPONENT_TYPE_LABEL, DGD_GROUP, DGD_NAME_LABEL, DGD_PLURAL, DGD_VERSIONS, FRONTEND_TYPE

SYSTEM_PORT = 9090  # Dynamo's DYN_SYSTEM_PORT: a worker's health and metrics
FRONTEND_PORT = 8000
WORKERS_ENV = "FAULTFLOW_WORKERS"  # lab.frontend reads it
SPEC_ANNOTATION = "lab.faultflow.dev/applied-spec"  # digest of the spec this simulator last wrote (a change: update)
RESYNC_S = 2.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def worker_address(namespace: str, dgd: str, component: str) -> str:
    """The workers of one component as the frontend reaches them: the headless Service's name."""
    return f"{component_name(dgd, component)}.{namespace}.svc.cluster.local:{SYSTEM_PORT}"


def _main(spec: dict) -> dict:
    containers = spec.get("containers") or []
    return next((c for c in containers if c.get("name") == "main"), containers[0])


def _add_port(container: dict, name: str, port: int) -> None:
    ports = container.setdefault("ports", [])
    if not any(p.get("containerPort") == port for p in ports):
        ports.append({"name": name, "containerPort": port, "protocol": "TCP"})


def pod_template(dgd: dict, comp: ComponentPlan, workers: list[str]) -> dict:
    """The component's pod template with what the operator adds (labels, ports, probes, discovery)."""
    name = dgd["metadata"]["name"]
    template = copy.deepcopy(comp.template)
    labels = {k: v for k, v in pod_labels(name, comp).items() if k != HASH_LABEL}  # the ReplicaSet sets its own
    spec = template["spec"]
    main = _main(spec)
    if comp.is_gpu_worker:
        _add_port(main, "system", SYSTEM_PORT)
        main.setdefault("readinessProbe", {"httpGet": {"path": "/health", "port": SYSTEM_PORT}, "periodSeconds": 1, "failureThreshold": 2})
    elif comp.type == FRONTEND_TYPE:
        _add_port(main, "http", FRONTEND_PORT)
        main.setdefault("readinessProbe", {"httpGet": {"path": "/v1/models", "port": FRONTEND_PORT}, "periodSeconds": 1})
        env = [e for e in main.get("env") or [] if e.get("name") != WORKERS_ENV]
        main["env"] = [*env, {"name": WORKERS_ENV, "value": ",".join(workers)}]
    return {"metadata": {"labels": labels, "annotations": template["metadata"]["annotations"]}, "spec": spec}


def owner(dgd: dict) -> dict:
    meta = dgd["metadata"]
    return {"apiVersion": dgd["apiVersion"], "kind": dgd["kind"], "name": meta["name"], "uid": meta["uid"], "controller": True}


def deployment(dgd: dict, comp: ComponentPlan, workers: list[str]) -> dict:
    meta = dgd["metadata"]
    selector = {DGD_NAME_LABEL: meta["name"], COMPONENT_LABEL: comp.name}
    spec = {"replicas": comp.replicas, "selector": {"matchLabels": selector}, "template": pod_template(dgd, comp, workers)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": component_name(meta["name"], comp.name),
            "namespace": meta["namespace"],
            "labels": {**selector, COMPONENT_TYPE_LABEL: comp.type},
            "ownerReferences": [owner(dgd)],
        },
        "spec": spec,
    }


def _service(dgd: dict, name: str, spec: dict) -> dict:
    meta = dgd["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {DGD_NAME_LABEL: meta["name"]},
            "ownerReferences": [owner(dgd)],
        },
        "spec": spec,
    }


def services(dgd: dict, plans: list[ComponentPlan]) -> list[dict]:
    name = dgd["metadata"]["name"]
    out = []
    if any(c.type == FRONTEND_TYPE for c in plans):
        frontend = {
            "selector": {DGD_NAME_LABEL: name, COMPONENT_TYPE_LABEL: FRONTEND_TYPE},
            "ports": [{"name": "http", "port": FRONTEND_PORT, "targetPort": FRONTEND_PORT}],
        }
        out.append(_service(dgd, f"{name}-frontend", frontend))
    for comp in plans:
        if comp.is_gpu_worker:
            workers = {
                "clusterIP": "None",  # headless: its DNS name answers with the Ready pods' addresses
                "selector": {DGD_NAME_LABEL: name, COMPONENT_LABEL: comp.name},
                "ports": [{"name": "system", "port": SYSTEM_PORT, "targetPort": SYSTEM_PORT}],
            }
            out.append(_service(dgd, component_name(name, comp.name), workers))
    return out


def complete(dep: dict, replicas: int) -> bool:
    """The deployment controller's own completion: the current spec observed, every replica updated and
    available, no old replica left."""
    status = dep.get("status") or {}
    return (
        status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) == replicas
        and status.get("replicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
    )


def component_status(dep: dict, comp: ComponentPlan) -> dict:
    status = dep.get("status") or {}
    return {
        "componentKind": "Deployment",
        "componentName": dep["metadata"]["name"],
        "replicas": comp.replicas,
        "updatedReplicas": status.get("updatedReplicas", 0),
        "readyReplicas": status.get("readyReplicas", 0),
        "availableReplicas": status.get("availableReplicas", 0),
    }


class DgdOperator:
    def __init__(self, kube: Kube, dgd_version: str, namespace: str | None = None):
        """Watches DGDs of one namespace, or of all (`namespace` None) as the operator does by default."""
        self.kube = kube
        self.dgds = Ref(f"{DGD_GROUP}/{dgd_version}", DGD_PLURAL, namespace, "")
        self.deployments = Ref("apps/v1", "deployments", namespace, "")
        self.stop_event = threading.Event()
        self.dirty = threading.Event()
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []  # last reconcile failures (printed, for debugging)

    def start(self) -> DgdOperator:
        mark = lambda _kind, _obj: self.dirty.set()  # noqa: E731 — every change means "reconcile"
        self.threads = [
            start_informer("operator-dgds", self.kube, self.dgds, mark, self.stop_event),
            start_informer("operator-deployments", self.kube, self.deployments, mark, self.stop_event, label_selector=DGD_NAME_LABEL),
        ]
        loop = threading.Thread(target=self._loop, name="operator-reconcile", daemon=True)
        loop.start()
        self.threads.append(loop)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.dirty.set()
        for thread in self.threads:
            thread.join(5)

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
                if [str(error)] != self.errors:
                    print(f"dgd-operator-simulator: {error}", flush=True)
                self.errors = [str(error)]
                self.dirty.set()
                self.stop_event.wait(0.2)  # back off before retrying a failed reconcile

    def reconcile_all(self) -> None:
        failures = []
        for dgd in self.kube.list(self.dgds).get("items") or []:
            if o.terminating(dgd):
                continue  # the garbage collector removes what it owns
            try:
                self.reconcile(dgd)
            except (InfrastructureError, NotFound, Conflict) as error:
                failures.append(f"{dgd['metadata']['namespace']}/{dgd['metadata']['name']}: {error}")  # one DGD must not starve others
        if failures:
            raise InfrastructureError("; ".join(failures))

    def reconcile(self, dgd: dict) -> None:
        ns, name = dgd["metadata"]["namespace"], dgd["metadata"]["name"]
        plans = plan(dgd)
        workers = [worker_address(ns, name, c.name) for c in plans if c.is_gpu_worker]
        for body in services(dgd, plans):
            ref = Ref("v1", "services", ns, body["metadata"]["name"])
            if self.kube.get_or_none(ref) is None:
                self.kube.create(Ref("v1", "services", ns, ""), body)
        applied = {comp.name: self._apply(deployment(dgd, comp, workers)) for comp in plans}
        owned = self.kube.list(Ref("apps/v1", "deployments", ns, ""), label_selector=f"{DGD_NAME_LABEL}={name}").get("items") or []
        for dep in owned:  # a component removed from the DGD
            if o.labels(dep).get(COMPONENT_LABEL) not in applied:
                self.kube.delete(Ref("apps/v1", "deployments", ns, dep["metadata"]["name"]))
        ready = all(complete(applied[c.name], c.replicas) for c in plans)
        write_status(self.kube, dgd, {c.name: component_status(applied[c.name], c) for c in plans}, ready, "component deployments", _now())

    def _apply(self, body: dict) -> dict:
        """Create the Deployment, or replace its spec when the DGD changed it (resourceVersion-guarded)."""
        meta = body["metadata"]
        ref = Ref("apps/v1", "deployments", meta["namespace"], meta["name"])
        applied = _digest(body["spec"])
        meta["annotations"] = {SPEC_ANNOTATION: applied}
        current = self.kube.get_or_none(ref)
        if current is None:
            return self.kube.create(Ref("apps/v1", "deployments", meta["namespace"], ""), body)
        if o.annotations_of(current).get(SPEC_ANNOTATION) == applied:
            return current
        current["spec"] = {**current["spec"], **body["spec"]}
        current["metadata"].setdefault("annotations", {})[SPEC_ANNOTATION] = applied
        return self.kube.replace(ref, current)  # carries its resourceVersion: a concurrent write is a Conflict, retried


def _digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="DGD operator SIMULATOR: DGDs -> Deployments and Services")
    parser.add_argument("--dgd-version", required=True, choices=DGD_VERSIONS)
    parser.add_argument("--namespace", default=None, help="watch one namespace (default: all, as the operator does)")
    parser.add_argument("--kubeconfig", default=None, help="default: the pod's ServiceAccount")
    args = parser.parse_args(argv)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    operator = DgdOperator(connect(args.kubeconfig), args.dgd_version, args.namespace).start()
    print(f"dgd-operator-simulator: watching {args.dgd_version} DGDs in {args.namespace or 'every namespace'}", flush=True)
    while not stopped.wait(3600):
        pass
    operator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
