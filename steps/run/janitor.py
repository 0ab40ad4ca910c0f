"""Which runs are orphans, and the sweep that reverts them: the janitor's rules, shared with `faultflow faults recover`."""

from __future__ import annotations

import time

from steps.event_names import EventName
from steps.events import emit
from steps.kube import objects as o
from steps.kube.client import Kube, NotFound, Ref
from steps.run import ledger as L
from steps.run.revert import event_name, revert_run

STEP = "janitor"


WORKFLOWS = ("argoproj.io/v1alpha1", "workflows")


FINISHED = ("Succeeded", "Failed", "Error")


def orphan_reason(kube: Kube, run: L.RunInfo, now_ms: int) -> str | None:
    if now_ms >= run.expires_ms:
        return "ttl-expired"
    if not run.workflow:
        return None
    wf = run.workflow
    try:
        obj = kube.get(Ref(WORKFLOWS[0], WORKFLOWS[1], wf.get("namespace") or run.namespace, wf["name"]))
    except NotFound:
        # Is it the workflow or the whole Workflow type that is missing? Without Argo installed we
        # cannot tell a live run from a dead one, so only the TTL decides.
        try:
            kube.list(Ref(WORKFLOWS[0], WORKFLOWS[1], wf.get("namespace") or run.namespace, ""))
        except NotFound:
            return None
        return "workflow-gone"
    if wf.get("uid") and obj["metadata"].get("uid") != wf["uid"]:
        return "workflow-gone"  # same name, a different (newer) workflow
    if o.phase(obj) in FINISHED:
        return "workflow-finished"
    return None


def expired_entries(ledger: L.Ledger, now_ms: int) -> frozenset[str]:
    """Created objects whose own `expires_ms` passed. Toggle entries are not swept this way: the shim
    reads the toggle's expiry itself, and reverting one needs a pod on the node."""
    return frozenset(e.id for e in ledger.active()
                     if e.kind in L.CREATED_OBJECT_KINDS and e.data.get("expires_ms") and e.data["expires_ms"] <= now_ms)


def sweep(kube: Kube, namespace: str | None, timeout_s: float, dry_run: bool = False, steps_image: str | None = None,
          only_run: str | None = None, force: bool = False, step: str = STEP) -> tuple[int, int]:
    """Reverts orphaned runs (or `only_run` / every run with `force`). Returns (runs reverted, entries reverted)."""
    store = L.LedgerStore(kube)
    runs = entries = 0
    now_ms = int(time.time() * 1000)
    for ledger in store.all(namespace):
        if only_run is not None and ledger.run.run_id != only_run:
            continue
        if not ledger.active():
            continue
        reason = "recover" if force else orphan_reason(kube, ledger.run, now_ms)
        only = None
        if reason is None:
            only = expired_entries(ledger, now_ms)
            if not only:
                continue
            reason = "entry-expired"
        if dry_run:
            for entry in ledger.active():
                if only is not None and entry.id not in only:
                    continue
                emit(step, EventName.WOULD_REVERT, run_id=ledger.run.run_id, entry=entry.id, kind=entry.kind, reason=reason)
            continue
        outcomes = revert_run(kube, store, ledger, timeout_s, steps_image=steps_image, entry_ids=only)
        runs += 1
        entries += len(outcomes)
        for outcome in outcomes:
            emit(step, event_name(outcome), run_id=ledger.run.run_id, entry=outcome.entry_id, kind=outcome.kind,
                 action=outcome.action, reason=reason)
    return runs, entries
