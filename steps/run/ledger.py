"""The run ledger: what a run changed, written BEFORE each change, kept in the cluster.

One ConfigMap per run, `faultflow-run-<id>` in faultflow's own namespace (`steps.run.install`: only
faultflow's accounts write there), labelled `faultflow.dev/run=<id>` (so any process — a later step,
the exit handler, the janitor, a person with `faultflow faults recover` — finds it after a crash,
`argo terminate` or a deleted workflow). A ConfigMap with the ledger label anywhere else is never
read: whoever may create a ConfigMap in some namespace must not steer the janitor's rights. Each
changed object also carries the annotation (created objects: the label) `faultflow.dev/run=<id>`,
and a revert acts only on an object that does (`steps.run.revert`).

Data keys:
* `run` — JSON `RunInfo` (who, what, when, TTL, the workflow that owns the run);
* `entry.<id>` — JSON `Entry`, one per change: its kind, target, state and what is needed to undo it
  exactly (the original object, the shim record, the toggle path …).

Entry states: `pending` (written, change maybe made) → `applied` → `reverted`. Reverting a pending
entry is always safe: every revert is computed from the live object and is a no-op when our change
is not there. Updates use the ConfigMap's resourceVersion (optimistic concurrency), so a janitor and a
live run never overwrite each other's record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from steps.errors import BadInput, InfrastructureError
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref
from steps.run.install import home_namespace

RUN_LABEL = "faultflow.dev/run"
LEDGER_LABEL = "faultflow.dev/ledger"
PREFIX = "faultflow-run-"

# Entry kinds (the network kinds are reverted by deleting the object the run created).
WORKLOAD_SHIM = "workload-shim"
NODE_TOGGLE = "node-toggle"
NODE_STATE = "node-state"
NETWORK_POLICY = "networkpolicy"
NETWORK_CHAOS = "networkchaos"
NETWORK_PROBE = "network-probe"  # verify-partition's probe pod
NVML_CONSUMER = "nvml-consumer"  # the NVML interposer in a consumer DaemonSet (steps.workload.nvml_consumers)
KINDS = (WORKLOAD_SHIM, NODE_TOGGLE, NODE_STATE, NETWORK_POLICY, NETWORK_CHAOS, NETWORK_PROBE, NVML_CONSUMER)
CREATED_OBJECT_KINDS = (NETWORK_POLICY, NETWORK_CHAOS, NETWORK_PROBE)  # reverted by deleting the object

PENDING, APPLIED, REVERTED = "pending", "applied", "reverted"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class RunInfo:
    run_id: str
    namespace: str
    created_ms: int
    ttl_s: int
    workflow: dict | None = None  # {"namespace", "name", "uid"} of the owning Argo Workflow
    node: str | None = None
    gpu: int | None = None
    pci: str | None = None
    xid: int | None = None
    target: str | None = None  # "dgd/NAME" | "deployment/NAME" | "statefulset/NAME"
    restore_node: bool = False

    @property
    def expires_ms(self) -> int:
        return self.created_ms + self.ttl_s * 1000


@dataclass
class Entry:
    id: str
    kind: str
    target: dict  # kube Ref as dict, or {"node": name} for node entries
    state: str = PENDING
    created_ms: int = field(default_factory=now_ms)
    updated_ms: int = field(default_factory=now_ms)
    data: dict = field(default_factory=dict)


@dataclass
class Ledger:
    run: RunInfo
    entries: dict[str, Entry]
    resource_version: str | None = None

    def active(self) -> list[Entry]:
        return [e for e in self.entries.values() if e.state != REVERTED]

    def to_configmap(self, namespace: str) -> dict:
        """The ConfigMap in `namespace` (faultflow's; the run's own `namespace` is the workload's)."""
        data = {"run": json.dumps(asdict(self.run), sort_keys=True)}
        for entry in self.entries.values():
            data[f"entry.{entry.id}"] = json.dumps(asdict(entry), sort_keys=True)
        meta: dict[str, Any] = {
            "name": configmap_name(self.run.run_id),
            "namespace": namespace,
            "labels": {RUN_LABEL: self.run.run_id, LEDGER_LABEL: "true"},
        }
        if self.resource_version:
            meta["resourceVersion"] = self.resource_version
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}

    @classmethod
    def from_configmap(cls, cm: dict) -> Ledger:
        data = cm.get("data") or {}
        try:
            run = RunInfo(**json.loads(data["run"]))
            entries = {}
            for key, value in data.items():
                if key.startswith("entry."):
                    entry = Entry(**json.loads(value))
                    entries[entry.id] = entry
        except (KeyError, TypeError, ValueError) as error:
            raise InfrastructureError(f"ledger {o.name(cm)} is unreadable: {error}") from None
        name = o.name(cm)
        typed = (
            isinstance(run.run_id, str)
            and isinstance(run.namespace, str)
            and isinstance(run.created_ms, int)
            and isinstance(run.ttl_s, int)
            and all(isinstance(e.kind, str) and isinstance(e.state, str) for e in entries.values())
        )
        if not typed or name != configmap_name(run.run_id):
            raise InfrastructureError(f"ledger {name} is unreadable: it does not describe run {run.run_id!r}")
        return cls(run=run, entries=entries, resource_version=o.resource_version(cm))


def configmap_name(run_id: str) -> str:
    return PREFIX + run_id


def ref(namespace: str, run_id: str) -> Ref:
    return Ref("v1", "configmaps", namespace, configmap_name(run_id))


class LedgerStore:
    """Reads and writes ledgers, all in `home` (faultflow's namespace); every write is a
    resourceVersion-checked read-modify-write. `namespace` arguments are the run's workload
    namespace: a ledger of the same run id for another namespace is not this run's."""

    def __init__(self, kube: Kube, home: str | None = None):
        self.kube = kube
        self.home = home or home_namespace()

    def load(self, namespace: str, run_id: str) -> Ledger | None:
        ledger = self._load(run_id)
        return ledger if ledger is not None and ledger.run.namespace == namespace else None

    def _load(self, run_id: str) -> Ledger | None:
        try:
            return Ledger.from_configmap(self.kube.get(ref(self.home, run_id)))
        except NotFound:
            return None

    def require(self, namespace: str, run_id: str, preflight: str = "preflight") -> Ledger:
        """The run's ledger; a step that acts on a run refuses one that never ran `preflight`."""
        ledger = self.load(namespace, run_id)
        if ledger is None:
            raise BadInput(f"run {run_id} has no ledger in namespace {namespace}: run {preflight} first")
        return ledger

    def open(self, run: RunInfo) -> Ledger:
        """Creates the run's ledger, or returns the existing one (a retried preflight)."""
        existing = self._load(run.run_id)
        if existing is None:
            ledger = Ledger(run=run, entries={})
            try:
                return Ledger.from_configmap(self.kube.create(ref(self.home, run.run_id), ledger.to_configmap(self.home)))
            except Conflict:  # created concurrently
                existing = self._load(run.run_id)
                if existing is None:  # and deleted again before we could read it
                    raise InfrastructureError(f"the ledger of run {run.run_id} was created and deleted concurrently") from None
        if existing.run.namespace != run.namespace:
            raise BadInput(f"run {run.run_id} already exists for namespace {existing.run.namespace}; use a new run id")
        return existing

    def update(self, namespace: str, run_id: str, change: Callable[[Ledger], None], attempts: int = 8) -> Ledger:
        for _ in range(attempts):
            ledger = self.load(namespace, run_id)
            if ledger is None:
                raise InfrastructureError(f"run {run_id} has no ledger in namespace {namespace} (run preflight first)")
            change(ledger)
            try:
                return Ledger.from_configmap(self.kube.replace(ref(self.home, run_id), ledger.to_configmap(self.home)))
            except Conflict:
                continue
        raise InfrastructureError(f"ledger of run {run_id} kept changing under us ({attempts} attempts)")

    def record(self, namespace: str, run_id: str, entry: Entry) -> Ledger:
        """Writes (or rewrites) an entry; called BEFORE the change it describes."""

        def put(ledger: Ledger) -> None:
            old = ledger.entries.get(entry.id)
            if old is not None and old.state == APPLIED and entry.state == PENDING:
                entry.state = APPLIED  # a retried step must not forget that the change is in place
            entry.updated_ms = now_ms()
            ledger.entries[entry.id] = entry

        return self.update(namespace, run_id, put)

    def set_state(self, namespace: str, run_id: str, entry_id: str, state: str) -> Ledger:
        def put(ledger: Ledger) -> None:
            if entry_id in ledger.entries:
                ledger.entries[entry_id].state = state
                ledger.entries[entry_id].updated_ms = now_ms()

        return self.update(namespace, run_id, put)

    def all(self, namespace: str | None = None) -> list[Ledger]:
        """Every ledger in faultflow's namespace (only those of runs in `namespace` when given)."""
        listing = self.kube.list(Ref("v1", "configmaps", self.home, ""), label_selector=f"{LEDGER_LABEL}=true")
        out = []
        for cm in listing.get("items") or []:
            try:
                ledger = Ledger.from_configmap(cm)
            except InfrastructureError:
                continue  # an unreadable ledger is reported by `faults list`, not fatal for the others
            if namespace is None or ledger.run.namespace == namespace:
                out.append(ledger)
        return sorted(out, key=lambda ledger: ledger.run.created_ms)
