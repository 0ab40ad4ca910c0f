"""GPU guardrails: the GPU index exists on the node, NVSentinel watches the node and its circuit breaker is not tripped."""

from __future__ import annotations

from steps.errors import BadInput, CheckFailed
from steps.gpu import nvsentinel
from steps.kube import objects as o
from steps.kube.client import Kube, Ref


def check_gpu_index(node: dict, gpu: int) -> None:
    """The index must name one of the node's GPUs. Preflight cannot read the node's /proc, so the
    index → PCI bus id mapping is inject-xid's (on the node); refusing an impossible index here means
    nothing is injected for it."""
    capacity = (o.status(node).get("capacity") or {}).get("nvidia.com/gpu")
    if capacity is None:
        raise BadInput(f"node {node['metadata']['name']} advertises no nvidia.com/gpu capacity")
    if not 0 <= gpu < int(capacity):
        raise BadInput(f"GPU index {gpu} is out of range on node {node['metadata']['name']} ({capacity} GPUs)")


def check_nvsentinel(kube: Kube, nvsentinel_ns: str, node: str, expect_remediation: bool) -> None:
    breaker = kube.get_or_none(Ref("v1", "configmaps", nvsentinel_ns, nvsentinel.CIRCUIT_BREAKER_CONFIGMAP))
    if breaker is not None and nvsentinel.circuit_breaker_tripped(breaker.get("data")):
        raise CheckFailed(
            f"NVSentinel's circuit breaker is TRIPPED (configmap {nvsentinel_ns}/{nvsentinel.CIRCUIT_BREAKER_CONFIGMAP}); reset it first"
        )
    if not expect_remediation:
        return
    pods = (
        kube.list(
            Ref("v1", "pods", nvsentinel_ns, ""), label_selector=nvsentinel.SHM_POD_LABEL, field_selector=f"spec.nodeName={node}"
        ).get("items")
        or []
    )
    if not any(o.phase(p) == "Running" for p in pods):
        raise CheckFailed(
            f"NVSentinel's syslog-health-monitor is not running on node {node} (namespace {nvsentinel_ns}); "
            "nothing would detect the XID — install NVSentinel or pass --expect none"
        )
