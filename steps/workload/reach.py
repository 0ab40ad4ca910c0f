"""Did the fault reach the workload? The CUDA shim prints one stderr line per XID it starts injecting
(`faultflow-shim: injecting XID <n> (<name>): <api> returns <error>`, shim/control.c), so a worker on
the target node whose log (or its previous container's, after a crash) holds that line saw failing
CUDA calls. Steps that can read pod logs emit the finding as the event `fault_reached_workload`; the
report turns it into the required check of the same name for gpu-fault and cuda-only.
"""

from __future__ import annotations

from steps.errors import StepError
from steps.event_names import EventName
from steps.kube.client import Kube, NotFound, Ref

FAULT_REACHED = EventName.FAULT_REACHED_WORKLOAD
INJECTING = "faultflow-shim: injecting XID "
LOG_LIMIT = 4 * 1024 * 1024


def injecting_seen(log_text: str, xid: int) -> bool:
    prefix = f"{INJECTING}{xid} "
    return any(line.startswith(prefix) for line in log_text.splitlines())


def workers_on_node(kube: Kube, namespace: str, label_selector: str, node: str) -> list[dict]:
    """The workload's pods on `node` that are not finished (the ones a fault there can reach)."""
    listing = kube.list(Ref("v1", "pods", namespace, ""), label_selector=label_selector, field_selector=f"spec.nodeName={node}")
    return sorted(
        (p for p in listing.get("items") or [] if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")),
        key=lambda p: p["metadata"]["name"],
    )


def _log(kube: Kube, namespace: str, pod: str, container: str, previous: bool = False) -> str:
    """The container's log; NotFound when the pod is gone. The previous container's log is "" when
    there is none (the API refuses that request with 400)."""
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log?container={container}&limitBytes={LOG_LIMIT}"
    if not previous:
        return kube.request_text("GET", path)
    try:
        return kube.request_text("GET", path + "&previous=true")
    except StepError:
        return ""
    except NotFound:
        return ""


def reached(kube: Kube, namespace: str, pods: list[dict], xid: int, container: str | None = None) -> tuple[list[str], list[str]]:
    """(pods whose log shows the shim injecting `xid`, pods whose log could be read)."""
    hits, read = [], []
    for pod in pods:
        name = pod["metadata"]["name"]
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        main = container or ("main" if "main" in names else (names[0] if names else "main"))
        try:
            current = _log(kube, namespace, name, main)
        except NotFound:
            continue  # gone before we could read it
        read.append(name)
        if injecting_seen(current, xid) or injecting_seen(_log(kube, namespace, name, main, previous=True), xid):
            hits.append(name)
    return hits, read
