"""Guardrails any fault passes before it is injected: the namespace has opted in, the targeted nodes are known."""

from __future__ import annotations

from steps.errors import BadInput, CheckFailed
from steps.kube import objects as o
from steps.kube.client import Kube, Ref
from steps.workload.kinds import worker_pod_selector

OPT_IN_LABEL = "faultflow.dev/allow-faults"


def check_namespace(kube: Kube, namespace: str) -> None:
    ns = kube.get_or_none(Ref("v1", "namespaces", None, namespace))
    if ns is None:
        raise BadInput(f"namespace {namespace} not found")
    if o.labels(ns).get(OPT_IN_LABEL) != "true":
        raise BadInput(f"namespace {namespace} has not opted in to fault injection (label {OPT_IN_LABEL}=true)")


def resolve_nodes(kube: Kube, namespace: str, obj: dict, nodes: tuple[str, ...]) -> list[str]:
    if nodes:
        for node in nodes:
            if kube.get_or_none(Ref("v1", "nodes", None, node)) is None:
                raise BadInput(f"node {node} not found")
        return list(nodes)
    pods = kube.list(Ref("v1", "pods", namespace, ""), label_selector=worker_pod_selector(obj)).get("items") or []
    ready = sorted((p for p in pods if o.pod_ready(p) and o.node_name(p)), key=lambda p: p["metadata"]["name"])
    if not ready:
        raise CheckFailed(f"no Ready GPU worker pod of {obj['kind']} {obj['metadata']['name']} to pick a target node from (pass --node)")
    return [ready[0]["spec"]["nodeName"]]
