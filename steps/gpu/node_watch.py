"""Watching a Node (and the pods on it) until a condition holds or a deadline passes.

list → watch from the list's resourceVersion with bookmarks; a watch the server ends (timeout) is
reopened from the last resourceVersion seen; a 410 Gone (ERROR event) re-lists. No polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from steps.kube import objects as o
from steps.kube.client import Kube, Ref

NODES = Ref("v1", "nodes", None, "")
T = TypeVar("T")


def watch_node_until(
    kube: Kube,
    node: str,
    predicate: Callable[[dict], bool],
    deadline: float,
    on_connect: Callable[[], None] | None = None,
    watch_timeout_s: float = 60,
    on_relist: Callable[[str], None] | None = None,
    on_object: Callable[[dict], None] | None = None,
) -> tuple[dict | None, float | None]:
    """(node object, wall-clock time it was seen) once `predicate(node)`; (last object, None) at the deadline.

    Each watch connection lasts at most `watch_timeout_s` (server side) and is then resumed from the
    last resourceVersion seen; `on_relist(reason)` is called when a 410 Gone forced a fresh list.
    `on_object` sees every state of the node observed, in order.
    """
    selector = f"metadata.name={node}"

    def relist() -> tuple[dict | None, str]:
        listing = kube.list(NODES, field_selector=selector)
        items = listing.get("items") or []
        return (items[0] if items else None), listing["metadata"]["resourceVersion"]

    obj, rv = relist()
    while True:
        if obj is not None:
            if on_object is not None:
                on_object(obj)
            if predicate(obj):
                return obj, time.time()
        gone = False
        while not gone and time.monotonic() < deadline:
            remaining = deadline - time.monotonic()
            if on_connect is not None:
                on_connect()
            for event in kube.watch(NODES, rv, field_selector=selector, timeout_seconds=max(1, int(min(remaining, watch_timeout_s)) + 1)):
                kind = event.get("type")
                if kind == "ERROR":
                    gone = True  # 410 Gone: our resourceVersion is older than etcd's compaction
                    break
                rv = event["object"]["metadata"]["resourceVersion"]
                if kind in ("ADDED", "MODIFIED"):
                    obj = event["object"]
                    if on_object is not None:
                        on_object(obj)
                    if predicate(obj):
                        return obj, time.time()
                if time.monotonic() >= deadline:
                    break
        if not gone:
            return obj, None
        listed, rv = relist()
        obj = listed if listed is not None else obj
        if on_relist is not None:
            on_relist("410 Gone: resourceVersion too old, re-listed")


def wait_pods_left(
    kube: Kube, namespace: str, label_selector: str, node: str, deadline: float, baseline: int | None = None
) -> tuple[bool, int]:
    """Watches the workload's pods on `node` until none is left (deleted or terminal). (done, count left).

    `baseline`: how many of them were on the node before the fault (None: as the first listing finds
    them). With none there, nothing can be evicted: (False, 0) at once, not a success — a fault on a
    node without the workload must not pass as "the workers left"."""
    pods = Ref("v1", "pods", namespace, "")
    selector = f"spec.nodeName={node}"

    def live(items: dict) -> int:
        return sum(1 for p in items.values() if not o.finished(p))

    first = True
    while True:
        listing = kube.list(pods, label_selector=label_selector, field_selector=selector)
        current = {p["metadata"]["name"]: p for p in listing.get("items") or []}
        if first and (baseline if baseline is not None else live(current)) == 0:
            return False, 0
        first = False
        if live(current) == 0:
            return True, 0
        rv = listing["metadata"]["resourceVersion"]
        while time.monotonic() < deadline:
            gone = False
            for event in kube.watch(
                pods,
                rv,
                field_selector=selector,
                label_selector=label_selector,
                timeout_seconds=max(1, int(min(deadline - time.monotonic(), 60)) + 1),
            ):
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


def watch_objects_until(
    kube: Kube,
    collection: Ref,
    field_selector: str | None,
    found: Callable[[list[dict]], T | None],
    deadline: float,
    watch_timeout_s: float = 60,
) -> T | None:
    """Watches the objects a selector picks (e.g. a node's ResourceSlices) until `found(objects)`
    returns something, which is returned; None at the deadline. Same list → watch → resume / re-list
    on 410 as `watch_node_until`."""

    def relist() -> tuple[dict[str, dict], str]:
        listing = kube.list(collection, field_selector=field_selector)
        return {o.name(i) or "": i for i in listing.get("items") or []}, listing["metadata"]["resourceVersion"]

    current, rv = relist()
    while True:
        answer = found(list(current.values()))
        if answer is not None:
            return answer
        gone = False
        while not gone and time.monotonic() < deadline:
            remaining = deadline - time.monotonic()
            for event in kube.watch(
                collection, rv, field_selector=field_selector, timeout_seconds=max(1, int(min(remaining, watch_timeout_s)) + 1)
            ):
                kind = event.get("type")
                if kind == "ERROR":
                    gone = True
                    break
                rv = event["object"]["metadata"]["resourceVersion"]
                if kind == "DELETED":
                    current.pop(o.name(event["object"]) or "", None)
                elif kind in ("ADDED", "MODIFIED"):
                    current[o.name(event["object"]) or ""] = event["object"]
                    answer = found(list(current.values()))
                    if answer is not None:
                        return answer
                if time.monotonic() >= deadline:
                    break
        if not gone:
            return None
        current, rv = relist()
