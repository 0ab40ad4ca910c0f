"""How Dynamo's operator reads a DGD: its components (v1alpha1 `spec.services` map or v1beta1
`spec.components` list), each with its replicas and pod template, and the labels the operator puts
on a component's pods. Shared by the simulated lab's operator (`lab.dgd_operator_simulator`) and the
real cluster's (`lab.simulators.dgd_operator`); imports nothing of lab/ (the operator's image carries it).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass

from steps.kube import objects as o
from steps.kube.client import Kube, NotFound, Ref
from steps.workload.dynamo import (
    COMPONENT_LABEL,
    COMPONENT_TYPE_LABEL,
    DGD_NAME_LABEL,
    DGD_PLURAL,
    GPU_WORKER_TYPES,
    SUB_COMPONENT_TYPE_LABEL,
)

HASH_LABEL = "pod-template-hash"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class ComponentPlan:
    """One component as the operator materialises it."""

    name: str
    type: str
    sub_type: str | None
    replicas: int
    template: dict  # {"metadata": {...}, "spec": PodSpec}
    hash: str

    @property
    def gpus(self) -> int:
        total = 0
        for container in self.template["spec"].get("containers") or []:
            limit = ((container.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE)
            total += int(limit or 0)
        return total

    @property
    def is_gpu_worker(self) -> bool:
        return self.type in GPU_WORKER_TYPES or self.gpus > 0


def _hash(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def _v1alpha1_template(service: dict) -> dict:
    extra = copy.deepcopy(service.get("extraPodSpec") or {})
    main = extra.pop("mainContainer", None) or {}
    main = {"image": "dynamo-runtime", **main, "name": "main"}
    gpu = ((service.get("resources") or {}).get("limits") or {}).get("gpu")
    if gpu:
        main.setdefault("resources", {}).setdefault("limits", {})[GPU_RESOURCE] = str(gpu)
    if service.get("envs"):
        main["env"] = [*service["envs"], *(main.get("env") or [])]
    others = [c for c in extra.pop("containers", []) or [] if c.get("name") != "main"]
    spec = {**extra, "containers": [main, *others]}
    meta = service.get("extraPodMetadata") or {}
    return {"metadata": {"labels": dict(meta.get("labels") or {}), "annotations": dict(meta.get("annotations") or {})}, "spec": spec}


def _v1beta1_template(component: dict) -> dict:
    template = copy.deepcopy(component.get("podTemplate") or {})
    meta = o.meta(template)
    spec = template.get("spec") or {}
    spec.setdefault("containers", [{"name": "main", "image": "dynamo-runtime"}])
    return {"metadata": {"labels": dict(meta.get("labels") or {}), "annotations": dict(meta.get("annotations") or {})}, "spec": spec}


def plan(dgd: dict) -> list[ComponentPlan]:
    """Every component of the DGD, v1alpha1 or v1beta1, as pods to run."""
    spec = dgd.get("spec") or {}
    out = []
    if "components" in spec or dgd["apiVersion"].endswith("/v1beta1"):
        for comp in spec.get("components") or []:
            template = _v1beta1_template(comp)
            out.append(
                ComponentPlan(
                    comp["name"],
                    comp.get("type", ""),
                    comp.get("subComponentType"),
                    int(comp.get("replicas", 1)),
                    template,
                    _hash(template),
                )
            )
    else:
        for name, service in (spec.get("services") or {}).items():
            template = _v1alpha1_template(service or {})
            out.append(
                ComponentPlan(
                    name,
                    service.get("componentType", ""),
                    service.get("subComponentType"),
                    int(service.get("replicas", 1)),
                    template,
                    _hash(template),
                )
            )
    return out


def component_name(dgd_name: str, component: str) -> str:
    return f"{dgd_name}-{component.lower()}"


def pod_labels(dgd_name: str, comp: ComponentPlan) -> dict:
    labels = {
        **comp.template["metadata"]["labels"],
        DGD_NAME_LABEL: dgd_name,
        COMPONENT_LABEL: comp.name,
        COMPONENT_TYPE_LABEL: comp.type,
        HASH_LABEL: comp.hash,
    }
    if comp.sub_type:
        labels[SUB_COMPONENT_TYPE_LABEL] = comp.sub_type
    return labels


def write_status(kube: Kube, dgd: dict, components: dict, ready: bool, waiting_for: str, now: str) -> None:
    """The DGD's status as Dynamo's operator writes it (Ready condition, state, per-component status),
    patched only when it changed; `waiting_for` names what a not-Ready DGD waits for."""
    key = "components" if dgd["apiVersion"].endswith("/v1beta1") else "services"
    old = dgd.get("status") or {}
    old_ready: dict = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), {})
    want = "True" if ready else "False"
    condition = {
        "type": "Ready",
        "status": want,
        "reason": "AllComponentsReady" if ready else "ComponentsNotReady",
        "message": "" if ready else f"waiting for {waiting_for}",
        "lastTransitionTime": old_ready.get("lastTransitionTime") if old_ready.get("status") == want else now,
    }
    status = {
        "observedGeneration": dgd["metadata"].get("generation", 1),
        "state": "successful" if ready else "pending",
        "conditions": [condition],
        key: components,
    }
    if all(old.get(k) == v for k, v in status.items()):
        return
    try:
        kube.request(
            "PATCH",
            Ref(dgd["apiVersion"], DGD_PLURAL, dgd["metadata"]["namespace"], dgd["metadata"]["name"]).path() + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )
    except NotFound:
        pass  # deleted meanwhile
