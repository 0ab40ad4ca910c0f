"""Install CRDs and wait, by watching, until the API server has established every one."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from lab.processes import wait_until
from lab.rest import ApiError, Rest
from steps.kube import objects as o

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _established(crd: dict) -> bool:
    return o.condition_true(crd, "Established")


def _create(rest: Rest, crd: dict) -> None:
    try:
        rest.post(CRD_PATH, crd)
    except ApiError as err:
        if err.status != 409:  # already there: a re-run against the same cluster
            raise


def install(rest: Rest, definitions: list[dict], *, timeout_s: float) -> None:
    # Concurrent creates: the server validates each multi-megabyte schema on its own goroutine.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda crd: _create(rest, crd), definitions))
    wait_established(rest, {crd["metadata"]["name"] for crd in definitions}, timeout_s=timeout_s)


def wait_established(rest: Rest, names: set[str], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    listing = rest.get(CRD_PATH)
    pending = names - {c["metadata"]["name"] for c in listing["items"] if _established(c)}
    resource_version = listing["metadata"]["resourceVersion"]
    while pending:
        remaining = int(deadline - time.monotonic())
        if remaining <= 0:
            raise TimeoutError(f"CRDs not Established after {timeout_s}s: {sorted(pending)}")
        for event in rest.watch(CRD_PATH, resource_version, timeout_s=remaining):
            obj = event["object"]
            if event["type"] == "ERROR":
                break  # e.g. 410: list again below
            resource_version = obj["metadata"]["resourceVersion"]
            if _established(obj):
                pending.discard(obj["metadata"]["name"])
            if not pending:
                return
        else:
            continue
        listing = rest.get(CRD_PATH)
        pending = names - {c["metadata"]["name"] for c in listing["items"] if _established(c)}
        resource_version = listing["metadata"]["resourceVersion"]


def wait_served(rest: Rest, definitions: list[dict], *, timeout_s: float) -> None:
    """Wait until every CRD's resource can be listed at each served version.

    Established is a stored condition: a freshly started server may still be building the handler
    (404) or filling the resource's watch cache (429 "storage is (re)initializing").
    """
    pending = {
        f"/apis/{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['plural']}?limit=1"
        for crd in definitions
        for version in crd["spec"]["versions"]
        if version.get("served", True)
    }

    def served() -> bool | None:
        for path in sorted(pending):
            if rest.status(path) != 200:
                return None
            pending.discard(path)
        return True

    wait_until(served, what=f"CRDs served ({sorted(pending)})", timeout_s=timeout_s)
