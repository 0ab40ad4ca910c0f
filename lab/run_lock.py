"""The local runner's `synchronization` mutexes, as Kubernetes Leases.

Argo holds a scenario's mutexes (e.g. one GPU fault per cluster, one run per target namespace) in its
controller; a local run has no controller, so it takes the same locks as `coordination.k8s.io` Leases
in the cluster, where every runner (and a person with kubectl) sees them. A Lease is held while its
holder renews it; one whose holder stopped renewing (a SIGKILLed runner) is stale after
`leaseDurationSeconds` and may be taken over — the same rule Kubernetes' own leader election uses.
A Lease whose holder's Workflow record is finished is free at once: Argo releases a workflow's
mutexes when it ends, also when it is terminated (`argo terminate`, or a SIGKILLed local runner whose
record was then marked Failed). A missing record frees nothing before the expiry: a holder without
one cannot be told from a live one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lab.run_record import FINISHED, workflow_ref
from steps.errors import CheckFailed
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref

LEASE_DURATION_S = 30
RENEW_EVERY_S = 10


def _now() -> datetime:
    return datetime.now(UTC)


def _micro_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def lease_ref(namespace: str, name: str) -> Ref:
    return Ref("coordination.k8s.io/v1", "leases", namespace, name)


@dataclass(frozen=True)
class Holder:
    identity: str
    stale: bool


def holder(lease: dict, now: datetime) -> Holder:
    spec = lease.get("spec") or {}
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    duration = spec.get("leaseDurationSeconds") or LEASE_DURATION_S
    stale = renewed is None or _parse(renewed) + timedelta(seconds=duration) < now
    return Holder(spec.get("holderIdentity") or "", stale or not spec.get("holderIdentity"))


class RunLocks:
    """Takes every lock of a run or none (refusing with the holder's name), renews them while the run
    lasts, releases them at the end. Use as a context manager."""

    def __init__(self, kube: Kube, namespace: str, names: list[str], identity: str):
        self.kube, self.namespace, self.names, self.identity = kube, namespace, sorted(set(names)), identity
        self._held: list[str] = []
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease-renewer", daemon=True)

    def __enter__(self) -> RunLocks:
        try:
            for name in self.names:
                self._acquire(name)
        except BaseException:
            self.release()
            raise
        self._renewer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _body(self, name: str, resource_version: str | None = None) -> dict:
        now = _micro_time(_now())
        meta = {"name": name, "namespace": self.namespace, "labels": {"faultflow.dev/lock": "true"}}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": LEASE_DURATION_S, "acquireTime": now, "renewTime": now},
        }

    def _acquire(self, name: str) -> None:
        ref = lease_ref(self.namespace, name)
        try:
            self.kube.create(lease_ref(self.namespace, ""), self._body(name))
            self._held.append(name)
            return
        except Conflict:
            pass
        lease = self.kube.get(ref)
        current = holder(lease, _now())
        if current.identity != self.identity and not current.stale and not self._holder_ended(current.identity):
            raise CheckFailed(
                f"lock {name} is held by run {current.identity}: two runs must not fault the same "
                "target at once (wait for it; a dead runner's lock frees itself once its Workflow is finished or "
                f"{LEASE_DURATION_S}s after its last renewal)"
            )
        try:  # ours already, or a stale holder's: take it over, guarded by resourceVersion
            self.kube.replace(ref, self._body(name, lease["metadata"]["resourceVersion"]))
        except Conflict:
            raise CheckFailed(f"lock {name} was taken by another run just now") from None
        self._held.append(name)

    def _holder_ended(self, identity: str) -> bool:
        """The holder's Workflow record (a run's name is its record's name) is finished."""
        record = self.kube.get_or_none(workflow_ref(self.namespace, identity))
        return record is not None and o.phase(record) in FINISHED

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            for name in list(self._held):
                try:
                    self.kube.merge_patch(lease_ref(self.namespace, name), {"spec": {"renewTime": _micro_time(_now())}})
                except Exception:  # a missed renewal only shortens the lease; the next one may succeed
                    continue

    def release(self) -> None:
        self._stop.set()
        if self._renewer.is_alive():
            self._renewer.join(timeout=5)
        for name in reversed(self._held):
            ref = lease_ref(self.namespace, name)
            try:
                lease = self.kube.get(ref)
                if holder(lease, _now()).identity == self.identity:
                    self.kube.delete(ref)
            except NotFound:
                pass
        self._held.clear()
