"""What `faultflow lab status` shows of a running lab: nodes, the DGD's pods, NVSentinel's state."""

from __future__ import annotations

from lab.layout import LabDir
from steps.errors import InfrastructureError
from steps.gpu import nvsentinel as nv
from steps.kube import objects as o
from steps.kube.client import Ref, connect


def live_view(lab: LabDir, state: dict) -> dict:
    """Nodes and pods from the API server, as records and as printable lines."""
    kube = connect(str(lab.kubeconfig))
    try:
        nodes = kube.list(Ref("v1", "nodes", None, "")).get("items") or []
        pods = kube.list(Ref("v1", "pods", state["namespace"], "")).get("items") or []
        breaker = kube.get_or_none(Ref("v1", "configmaps", state["nvsentinel_namespace"], nv.CIRCUIT_BREAKER_CONFIGMAP))
    except InfrastructureError as error:
        return {"nodes": [], "pods": [], "lines": [f"  api server     NOT ANSWERING: {error}"]}
    node_rows = [
        {
            "name": n["metadata"]["name"],
            "gpus": (o.status(n).get("capacity") or {}).get("nvidia.com/gpu", "0"),
            "schedulable": not o.unschedulable(n),
            "nvsentinel_state": o.labels(n).get(nv.STATE_LABEL, ""),
        }
        for n in nodes
    ]
    pod_rows = [
        {
            "name": p["metadata"]["name"],
            "node": o.node_name(p) or "",
            "phase": o.phase(p) or "Pending",
            "ready": o.pod_ready(p),
            "restarts": sum(c.get("restartCount", 0) for c in o.status(p).get("containerStatuses") or []),
            "terminating": o.terminating(p),
        }
        for p in pods
    ]
    lines = ["  nodes:"]
    for n in node_rows:
        flags = "" if n["schedulable"] else " cordoned"
        flags += f" nvsentinel-state={n['nvsentinel_state']}" if n["nvsentinel_state"] else ""
        lines.append(f"    {n['name']:<8} gpus={n['gpus']}{flags}")
    lines.append(f"  pods in {state['namespace']}:")
    for p in pod_rows:
        ready = "Ready" if p["ready"] else "NotReady"
        term = " Terminating" if p["terminating"] else ""
        lines.append(f"    {p['name']:<44} {p['node']:<8} {p['phase']:<9} {ready:<8} restarts={p['restarts']}{term}")
    lines.append(f"  circuit breaker {((breaker or {}).get('data') or {}).get('status', 'absent')}")
    return {"nodes": node_rows, "pods": pod_rows, "lines": lines}
