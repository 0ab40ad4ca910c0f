"""Watching a Node (and the pods on it) until a condition holds or a deadline passes.

list → watch from the list's resourceVersion with bookmarks; a watch the server ends (timeout) is
reopened from the last resourceVersion seen; a 410 Gone (ERROR event) re-lists. No polling.
"""

from __future__ import annotations

import time
from typing import Callable

from steps.kube import Kube, Ref

NODES = Ref("v1", "nodes", None, "")


def watch_node_until(kube: Kube, node: str, predicate: Callable[[dict], bool], deadline: float,
                     on_connect: Callable[[], None] | None = None) -> tuple[dict | None, float | None]:
    """(node object, wall-clock time it was seen) once `predicate(node)`; (last object, None) at the deadline."""
    selector = f"metadata.name={node}"
    listing = kube.list(NODES, field_selector=selector)
    items = listing.get("items") or []
    obj = items[0] if items else None
    if obj is not None and predicate(obj):
        return obj, time.time()
    rv = listing["metadata"]["resourceVersion"]
    while time.monotonic() < deadline:
        remaining = deadline - time.monotonic()
        relist = False
        if on_connect is not None:
            on_connect()
        for event in kube.watch(NODES, rv, field_selector=selector, timeout_seconds=max(1, int(min(remaining, 60)) + 1)):
            kind = event.get("type")
            if kind == "ERROR":
                relist = True  # 410 Gone: our resourceVersion is too old
                break
            rv = event["object"]["metadata"]["resourceVersion"]
            if kind in ("ADDED", "MODIFIED"):
                obj = event["object"]
                if predicate(obj):
                    return obj, time.time()
            if time.monotonic() >= deadline:
                break
        if relist:
            listing = kube.list(NODES, field_selector=selector)
            items = listing.get("items") or []
            obj = items[0] if items else obj
            if obj is not None and items and predicate(obj):
                return obj, time.time()
            rv = listing["metadata"]["resourceVersion"]
    return obj, None


def wait_pods_left(kube: Kube, namespace: str, label_selector: str, node: str, deadline: float) -> tuple[bool, int]:
    """Watches the workload's pods on `node` until none is left (deleted or terminal). (done, count left)."""
    pods = Ref("v1", "pods", namespace, "")
    selector = f"spec.nodeName={node}"

    def live(items: dict) -> int:
        return sum(1 for p in items.values() if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"))

    while True:
        listing = kube.list(pods, label_selector=label_selector, field_selector=selector)
        current = {p["metadata"]["name"]: p for p in listing.get("items") or []}
        if live(current) == 0:
            return True, 0
        rv = listing["metadata"]["resourceVersion"]
        while time.monotonic() < deadline:
            gone = False
            for event in kube.watch(pods, rv, field_selector=selector, label_selector=label_selector,
                                    timeout_seconds=max(1, int(min(deadline - time.monotonic(), 60)) + 1)):
                if event["type"] == "ERROR":
                    gone = True
                    break
                rv = event["object"]["metadata"]["resourceVersion"]
                name = event["object"]["metadata"].get("name")
                if event["type"] == "DELETED":
                    current.pop(name, None)
                elif event["type"] in ("ADDED", "MODIFIED"):
                    current[name] = event["object"]
                if live(current) == 0:
                    return True, 0
                if time.monotonic() >= deadline:
                    break
            if gone:
                break
        else:
            return False, live(current)
        if time.monotonic() >= deadline:
            return False, live(current)
