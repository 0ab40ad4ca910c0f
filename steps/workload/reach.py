"""Did the fault reach the workload? The CUDA shim prints one stderr line per XID it starts injecting
(`faultflow-shim: injecting XID <n> (<name>): <api> returns <error>`, shim/control.c), so a worker on
the target node whose log (or its previous container's, after a crash) holds that line saw failing
CUDA calls. Steps that can read pod logs emit the finding as the event `fault_reached_workload`; the
report turns it into the required check of the same name for gpu-fault and cuda-only.

`ReachWatch` is how the scenarios collect it: it follows the workers' logs from BEFORE the fault
(`faultflow step watch-reach`, a daemon stage the fault stages wait for), because NVSentinel may
quarantine and drain the node before any later step could look — a deleted pod's log is gone, and a
check that depends on who is faster is no evidence. `reached()` reads logs once (cleanup-dgd).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from steps.errors import StepError
from steps.event_names import EventName
from steps.kube import objects as o
from steps.kube.client import Kube, NotFound, Ref

FAULT_REACHED = EventName.FAULT_REACHED_WORKLOAD
INJECTING = "faultflow-shim: injecting XID "
LOG_LIMIT = 4 * 1024 * 1024
PODS = Ref("v1", "pods", None, "")
# How long a follower waits before it opens a worker's log again: after its container ended (a
# restart may follow) or could not be read yet (a container still starting). A poll for a condition.
REOPEN_S = 1.0


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
        main = main_container(pod, container)
        try:
            current = _log(kube, namespace, name, main)
        except NotFound:
            continue  # gone before we could read it
        read.append(name)
        if injecting_seen(current, xid) or injecting_seen(_log(kube, namespace, name, main, previous=True), xid):
            hits.append(name)
    return hits, read


def main_container(pod: dict, container: str | None = None) -> str:
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    return container or ("main" if "main" in names else (names[0] if names else "main"))


@dataclass
class Finding:
    """What the workers' logs on the node have shown so far (sets of pod names)."""

    workers: set[str] = field(default_factory=set)  # every worker seen on the node
    read: set[str] = field(default_factory=set)  # those whose log stream was opened
    reached: set[str] = field(default_factory=set)  # those whose log showed the shim injecting the XID

    def fields(self) -> dict:
        """The `fault_reached_workload` event's fields (steps.report.journal.reach_check reads them)."""
        return {"workers": len(self.workers), "read": sorted(self.read), "reached": sorted(self.reached)}


class ReachWatch:
    """Follows the logs of the workload's workers on one node (pod log API, follow=true, one stream
    per worker, and any worker that appears there later) for the shim's `injecting XID <xid>` line.

    `start()` returns once every worker found on the node has its stream open (or is gone): from
    then on a line a worker logs reaches us even if NVSentinel deletes the pod right after, because
    the kubelet sends a follow stream everything the container wrote until it stops.
    `on_reached(finding)` is called (from a follower thread) each time another worker shows the line.
    """

    def __init__(self, kube: Kube, namespace: str, selector: str, node: str, xid: int, on_reached: Callable[[Finding], None]):
        self.kube, self.namespace, self.selector, self.node, self.xid = kube, namespace, selector, node, xid
        self.on_reached = on_reached
        self.finding = Finding()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._following: set[str] = set()  # pod uids with a follower

    def snapshot(self) -> Finding:
        with self._lock:
            return Finding(set(self.finding.workers), set(self.finding.read), set(self.finding.reached))

    def start(self) -> None:
        listing = self.kube.list(
            Ref("v1", "pods", self.namespace, ""), label_selector=self.selector, field_selector=f"spec.nodeName={self.node}"
        )
        settled = [self._follow(pod) for pod in listing.get("items") or []]
        threading.Thread(target=self._watch_new, args=(listing["metadata"]["resourceVersion"],), name="reach-pods", daemon=True).start()
        for first_try in settled:
            if first_try is not None:
                first_try.wait()

    def _follow(self, pod: dict) -> threading.Event | None:
        """A follower thread for a worker not followed yet; the event is set after its first try."""
        uid = pod["metadata"]["uid"]
        if o.finished(pod):
            return None
        with self._lock:
            if uid in self._following:
                return None
            self._following.add(uid)
            self.finding.workers.add(pod["metadata"]["name"])
        settled = threading.Event()
        threading.Thread(target=self._follow_log, args=(pod, settled), name=f"reach-{pod['metadata']['name']}", daemon=True).start()
        return settled

    def _follow_log(self, pod: dict, settled: threading.Event) -> None:
        name = pod["metadata"]["name"]
        path = (
            f"/api/v1/namespaces/{quote(self.namespace)}/pods/{quote(name)}/log"
            f"?container={quote(main_container(pod))}&follow=true&limitBytes={LOG_LIMIT}"
        )
        prefix = f"{INJECTING}{self.xid} "
        try:
            while not self.stop.is_set():
                try:
                    for line in self.kube.stream_lines(path):
                        if line == "":
                            with self._lock:
                                self.finding.read.add(name)
                            settled.set()
                        elif line.startswith(prefix):
                            with self._lock:
                                self.finding.reached.add(name)
                            self.on_reached(self.snapshot())
                            return  # this worker's answer is in
                except NotFound:
                    return  # the pod is gone (what it logged while we followed, we have)
                except StepError:
                    pass  # its container is not running yet (400): try again
                settled.set()
                self.stop.wait(REOPEN_S)  # the stream ended (container stopped): a restart may follow
        finally:
            settled.set()

    def _watch_new(self, resource_version: str) -> None:
        """Workers that land on the node later (a restart, a rollout) are followed too."""
        ref = Ref("v1", "pods", self.namespace, "")
        selector = f"spec.nodeName={self.node}"
        rv = resource_version
        while not self.stop.is_set():
            try:
                for event in self.kube.watch(ref, rv, field_selector=selector, label_selector=self.selector, timeout_seconds=60):
                    if event.get("type") == "ERROR":
                        listing = self.kube.list(ref, label_selector=self.selector, field_selector=selector)
                        for pod in listing.get("items") or []:
                            self._follow(pod)
                        rv = listing["metadata"]["resourceVersion"]
                        break
                    obj = event["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        self._follow(obj)
            except (StepError, NotFound):
                self.stop.wait(REOPEN_S)  # the API server was unreachable for a moment: watch again
