"""A v1beta1 DynamoGraphDeployment CRD derived from the real v1alpha1 one.

Only used while the upstream two-version CRD cannot be fetched (the operator's Go module is not
served here). It reproduces the v1beta1 shape documented by Dynamo 1.5/1.6 — `spec.components` is a
list keyed by `name` (`+listType=map`, max 25, names unique case-insensitively), each with `type`,
`replicas` and a full `podTemplate` whose serving container is `main` — and reuses the real generated
schemas for everything that both versions share (PodSpec, replicas, multinode, restart, ...). That is
what our code's hazards depend on: a JSON merge patch on `spec.components` replaces the whole list.
"""

from __future__ import annotations

import copy

COMPONENT_TYPES = ["frontend", "worker", "prefill", "decode", "planner", "epp"]
# Component fields whose v1alpha1 schema carries over unchanged.
SHARED_COMPONENT_FIELDS = ("replicas", "multinode", "scalingAdapter", "sharedMemory", "modelRef", "checkpoint")
SHARED_SPEC_FIELDS = ("backendFramework", "pvcs", "restart")

_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def derive_v1beta1(v1alpha1_crd: dict) -> dict:
    """Return a CRD serving and storing only v1beta1, built from a single-version v1alpha1 CRD."""
    crd = copy.deepcopy(v1alpha1_crd)
    (alpha,) = crd["spec"]["versions"]
    root = alpha["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]["properties"]
    service = spec["services"]["additionalProperties"]["properties"]

    pod_spec = copy.deepcopy(service["extraPodSpec"])
    pod_spec["properties"].pop("mainContainer", None)
    pod_spec["required"] = ["containers"]  # a PodTemplateSpec's spec needs its containers

    component = {
        "type": "object",
        "required": ["name", "type"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 63},
            "type": {"type": "string", "enum": COMPONENT_TYPES},
            "podTemplate": {
                "type": "object",
                "properties": {
                    "metadata": {
                        "type": "object",
                        "properties": {"labels": _STRING_MAP, "annotations": _STRING_MAP},
                    },
                    "spec": pod_spec,
                },
            },
            **{k: service[k] for k in SHARED_COMPONENT_FIELDS if k in service},
        },
    }
    beta_spec = {
        "type": "object",
        "required": ["components"],
        "properties": {
            "components": {
                "type": "array",
                "maxItems": 25,
                "items": component,
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "x-kubernetes-validations": [
                    {
                        "rule": "self.all(c, self.exists_one(d, d.name.lowerAscii() == c.name.lowerAscii()))",
                        "message": "component names must be unique (case-insensitive)",
                    },
                    {
                        "rule": "self.filter(c, c.type == 'epp').size() <= 1",
                        "message": "at most one component of type epp",
                    },
                ],
            },
            "env": spec["envs"],
            "annotations": _STRING_MAP,
            "labels": _STRING_MAP,
            "priorityClassName": {"type": "string"},
            **{k: spec[k] for k in SHARED_SPEC_FIELDS if k in spec},
        },
    }
    root["properties"]["spec"] = beta_spec
    # v1beta1 status is keyed by component; the operator writes it, the lab simulator too.
    root["properties"]["status"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    alpha["name"] = "v1beta1"
    crd["metadata"].setdefault("annotations", {})["faultflow.dev/derived-from"] = "v1alpha1"
    return crd
