"""List-then-watch loops for the lab's simulators (what client-go's informers do for a controller).

`run_informer` lists, hands every object to the handler as ADDED, then watches from the list's
resourceVersion; a watch the server closes is reopened, a 410 (ERROR event) or a connection failure
re-lists. It returns when `stop` is set (within one watch timeout).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from steps.errors import InfrastructureError
from steps.kube.client import Kube, Ref

WATCH_TIMEOUT_S = 2  # how long a stopped informer may linger; each re-watch is one cheap request
RETRY_S = 0.5


def run_informer(
    kube: Kube,
    collection: Ref,
    handle: Callable[[str, dict], None],
    stop: threading.Event,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> None:
    while not stop.is_set():
        try:
            listing = kube.list(collection, label_selector=label_selector, field_selector=field_selector)
            for item in listing.get("items") or []:
                handle("ADDED", item)
            rv = listing["metadata"]["resourceVersion"]
            relist = False
            while not stop.is_set() and not relist:
                for event in kube.watch(
                    collection, rv, field_selector=field_selector, label_selector=label_selector, timeout_seconds=WATCH_TIMEOUT_S
                ):
                    if event["type"] == "ERROR":
                        relist = True
                        break
                    rv = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        handle(event["type"], event["object"])
                    if stop.is_set():
                        return
        except InfrastructureError:
            stop.wait(RETRY_S)  # the API server restarting or going away: retry until stopped


def start_informer(
    name: str, kube: Kube, collection: Ref, handle: Callable[[str, dict], None], stop: threading.Event, **selectors: str | None
) -> threading.Thread:
    thread = threading.Thread(target=run_informer, args=(kube, collection, handle, stop), kwargs=selectors, name=name, daemon=True)
    thread.start()
    return thread
