"""The Dynamo operator's contract, as faultflow depends on it, written once; and the shapes of the
workloads faultflow targets, as pure functions over their dicts (no API calls here).

The contract (Dynamo's CRD and operator; shared/research/dynamo_inventory.md "labels"):

* the DynamoGraphDeployment resource: group `nvidia.com`, plural `dynamographdeployments`, versions
  v1alpha1 and v1beta1;
* the labels the operator puts on every pod it creates: the DGD's name, the component's name, its
  type and (v1alpha1 disaggregated workers) its sub-component type — stable across a pod's
  recreation, so pods are always selected by them, never by pod name;
* GPU workers are the components of type worker, prefill or decode — never found by name, never the
  frontend.

The shapes — find each component's pod spec and main container:

* DGD `nvidia.com/v1alpha1`: `spec.services` map; pod spec `extraPodSpec` (inline PodSpec), main
  container `extraPodSpec.mainContainer`; component type `componentType`.
* DGD `nvidia.com/v1beta1`: `spec.components` list keyed by `name`; pod spec `podTemplate.spec`, main
  container the one named `main` (else the first); component type `type`.
* `apps/v1` Deployment / StatefulSet: `spec.template.spec`, main container the first (or `--container`).

What the CUDA shim adds to those pod specs, and how it is taken away again, is `steps.workload.shim_patch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from steps.errors import BadInput

DGD_GROUP = "nvidia.com"
DGD_KIND = "DynamoGraphDeployment"
DGD_PLURAL = "dynamographdeployments"
DGD_VERSIONS = ("v1alpha1", "v1beta1")
GPU_WORKER_TYPES = ("worker", "prefill", "decode")
FRONTEND_TYPE = "frontend"

# The operator's pod labels.
DGD_NAME_LABEL = "nvidia.com/dynamo-graph-deployment-name"
COMPONENT_LABEL = "nvidia.com/dynamo-component"
COMPONENT_TYPE_LABEL = "nvidia.com/dynamo-component-type"
SUB_COMPONENT_TYPE_LABEL = "nvidia.com/dynamo-sub-component-type"


def gpu_worker_selector(dgd_name: str) -> str:
    """Label selector of a DGD's GPU worker pods, by the operator's labels."""
    return f"{DGD_NAME_LABEL}={dgd_name},{COMPONENT_TYPE_LABEL} in ({','.join(GPU_WORKER_TYPES)})"


def workload_kind(obj: dict) -> str:
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if kind == DGD_KIND and api_version == f"{DGD_GROUP}/v1alpha1":
        return "dgd-v1alpha1"
    if kind == DGD_KIND and api_version == f"{DGD_GROUP}/v1beta1":
        return "dgd-v1beta1"
    if kind == "Deployment" and api_version == "apps/v1":
        return "deployment"
    if kind == "StatefulSet" and api_version == "apps/v1":
        return "statefulset"
    raise BadInput(f"unsupported workload {api_version} {kind}")


@dataclass(frozen=True)
class Component:
    name: str
    type: str
    base: list[str | int]  # JSON path tokens of the component inside the object
    pod_spec: tuple[str, ...]  # relative path of the pod spec (may not exist yet)
    main: tuple[str | int, ...]  # relative path of the main container (may not exist yet)


def value_at(doc: Any, tokens) -> Any:
    """The value at a path of map keys / list indexes; None where a map lacks the key."""
    for token in tokens:
        if isinstance(doc, list):
            doc = doc[token]
        elif isinstance(doc, dict) and token in doc:
            doc = doc[token]
        else:
            return None
    return doc


def components(obj: dict, container: str | None = None) -> list[Component]:
    """Every component of the workload with its type (all of them, frontend included)."""
    kind = workload_kind(obj)
    spec = obj.get("spec") or {}
    out = []
    if kind == "dgd-v1alpha1":
        for name, service in (spec.get("services") or {}).items():
            out.append(
                Component(
                    name=name,
                    type=str((service or {}).get("componentType", "")),
                    base=["spec", "services", name],
                    pod_spec=("extraPodSpec",),
                    main=("extraPodSpec", "mainContainer"),
                )
            )
    elif kind == "dgd-v1beta1":
        for index, comp in enumerate(spec.get("components") or []):
            containers = value_at(comp, ("podTemplate", "spec", "containers")) or []
            main_index = next((i for i, c in enumerate(containers) if c.get("name") == "main"), 0)
            out.append(
                Component(
                    name=str(comp.get("name", "")),
                    type=str(comp.get("type", "")),
                    base=["spec", "components", index],
                    pod_spec=("podTemplate", "spec"),
                    main=("podTemplate", "spec", "containers", main_index),
                )
            )
    else:
        containers = value_at(spec, ("template", "spec", "containers")) or []
        if not containers:
            raise BadInput(f"{obj['kind']} {obj['metadata']['name']} has no containers")
        index = 0
        if container is not None:
            names = [c.get("name") for c in containers]
            if container not in names:
                raise BadInput(f"container {container!r} not in {obj['kind']} {obj['metadata']['name']} ({', '.join(names)})")
            index = names.index(container)
        out.append(
            Component(
                name=obj["metadata"]["name"],
                type="worker",
                base=["spec", "template"],
                pod_spec=("spec",),
                main=("spec", "containers", index),
            )
        )
    return out


def gpu_workers(obj: dict, container: str | None = None) -> list[Component]:
    """GPU worker components by type; BadInput when there are none (nothing would be faulted)."""
    found = [c for c in components(obj, container) if c.type in GPU_WORKER_TYPES]
    if not found:
        types = sorted({c.type or "?" for c in components(obj, container)})
        raise BadInput(
            f"{obj['kind']} {obj['metadata']['name']} has no GPU worker components "
            f"(types {', '.join(types)}; expected one of {', '.join(GPU_WORKER_TYPES)})"
        )
    return found
