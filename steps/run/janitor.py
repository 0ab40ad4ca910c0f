"""Which runs are orphans, and the sweep that reverts them: the janitor's rules, shared with `faultflow faults recover`.

Only ledgers in faultflow's own namespace are read (`LedgerStore.home`). The owning Workflow is read
where the ledger says (faultflow's namespace in a deployment: the janitor may read Workflows only
there; a Workflow it may not read leaves the run to its TTL). Whether a run counts as an orphan is
no privilege: every revert is bounded by `steps.run.revert` whatever the reason. Each entry is reverted on its own: one that fails (a toggle-off pod
that never finishes) does not hold back the others; the sweep ends with exit 3 when any failed. A
toggle entry on a node that is not Ready is deferred to a later sweep (its pod could not run there).
"""

from __future__ import annotations

import time

from steps.errors import InfrastructureError, StepError
from steps.event_names import EventName
from steps.events import emit
from steps.kube.argo import completed, workflow_ref
from steps.kube.client import Kube, NotFound, Ref
from steps.run import ledger as L
from steps.run import orphans
from steps.run.revert import NodeConfig, event_name, in_order, marked_entry_id, revert_marked_workload, revert_run

STEP = "janitor"


LEDGER_GONE = "ledger-gone"  # the reason for a revert from the object's own shim mark


def orphan_reason(kube: Kube, run: L.RunInfo, now_ms: int, home: str) -> str | None:
    """Why the run is an orphan, or None while it is live. The owning Workflow's phase is asked first:
    a Workflow still running is live whatever the TTL says (its own activeDeadlineSeconds ends it);
    the TTL decides only for a run without a Workflow we can look at."""
    ttl = "ttl-expired" if now_ms >= run.expires_ms else None
    wf = run.workflow
    if not isinstance(wf, dict) or not isinstance(wf.get("name"), str):
        return ttl
    # faultflow's Workflows run in its own namespace (the janitor may read Workflows only there); a
    # ledger naming another one is judged by its TTL when that Workflow cannot be read.
    where = wf.get("namespace") if isinstance(wf.get("namespace"), str) and wf.get("namespace") else home
    try:
        obj = kube.get(workflow_ref(where, wf["name"]))
    except NotFound:
        # Is it the workflow or the whole Workflow type that is missing? Without Argo installed we
        # cannot tell a live run from a dead one, so only the TTL decides.
        try:
            kube.list(workflow_ref(where))
        except (NotFound, StepError):
            return ttl
        return "workflow-gone"
    except StepError:
        return ttl  # not ours to read (403): the TTL decides
    if wf.get("uid") and obj["metadata"].get("uid") != wf["uid"]:
        return "workflow-gone"  # same name, a different (newer) workflow
    if completed(obj):
        return "workflow-finished"
    return None  # the workflow still runs: live


def expired_entries(ledger: L.Ledger, now_ms: int) -> frozenset[str]:
    """Created objects whose own `expires_ms` passed. Toggle entries are not swept this way: the shim
    reads the toggle's expiry itself, and reverting one needs a pod on the node."""
    return frozenset(
        e.id for e in ledger.active() if e.kind in L.CREATED_OBJECT_KINDS and e.data.get("expires_ms") and e.data["expires_ms"] <= now_ms
    )


def node_ready(kube: Kube, name: str) -> bool | None:
    """True/False from the node's Ready condition; None when the node is gone."""
    node = kube.get_or_none(Ref("v1", "nodes", None, name))
    if node is None:
        return None
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = [c for c in conditions if c.get("type") == "Ready"]
    # No conditions at all: a node object nobody reports for (no kubelet) — judged by the pod's fate.
    return not ready or ready[-1].get("status") == "True"


def sweep(
    kube: Kube,
    namespace: str | None,
    timeout_s: float,
    dry_run: bool = False,
    node_agent_image: str | None = None,
    only_run: str | None = None,
    force: bool = False,
    step: str = STEP,
    toggle_dir: str | None = None,
    include_node: bool | None = False,
    home: str | None = None,
) -> tuple[int, int]:
    """Reverts orphaned runs (or `only_run` / every run with `force`). Returns (runs reverted, entries reverted).
    `include_node` False (the janitor): a node's cordon is never lifted here (that is restore-node's, or a
    person's with `faults recover`); None: as the run asked (`--restore-node`)."""
    store = L.LedgerStore(kube, home)
    runs = entries = 0
    failures: list[str] = []
    node_config: NodeConfig | None = None
    now_ms = int(time.time() * 1000)
    for ledger in store.all(namespace):
        if only_run is not None and ledger.run.run_id != only_run:
            continue
        if not ledger.active():
            continue
        reason = "recover" if force else orphan_reason(kube, ledger.run, now_ms, store.home)
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
        reverted = 0
        for entry in in_order(ledger.active()):
            if only is not None and entry.id not in only:
                continue
            if entry.kind == L.NODE_STATE and include_node is False:
                emit(step, EventName.NODE_LEFT, run_id=ledger.run.run_id, entry=entry.id, reason="the janitor never uncordons")
                continue
            try:
                if entry.kind == L.NODE_TOGGLE:
                    node = entry.target.get("node") if isinstance(entry.target, dict) else None
                    if isinstance(node, str) and node_ready(kube, node) is False:
                        emit(
                            step,
                            EventName.REVERT_DEFERRED,
                            run_id=ledger.run.run_id,
                            entry=entry.id,
                            kind=entry.kind,
                            node=node,
                            reason="node-not-ready",
                        )
                        continue
                    node_config = node_config or NodeConfig.installed(kube, store.home, node_agent_image, toggle_dir)
                outcomes = revert_run(
                    kube, store, ledger, timeout_s, node_config=node_config, include_node=include_node, entry_ids=frozenset({entry.id})
                )
            except (StepError, NotFound, KeyError, TypeError, ValueError, AttributeError) as error:
                failures.append(f"{ledger.run.run_id}/{entry.id}: {error}")
                emit(step, EventName.REVERT_FAILED, run_id=ledger.run.run_id, entry=entry.id, kind=entry.kind, error=str(error))
                continue
            for outcome in outcomes:
                reverted += outcome.action != "refused"
                emit(
                    step,
                    event_name(outcome),
                    run_id=ledger.run.run_id,
                    entry=outcome.entry_id,
                    kind=outcome.kind,
                    action=outcome.action,
                    reason=reason,
                )
        runs += reverted > 0
        entries += reverted
    orphan_runs, orphan_entries = sweep_marked(kube, store.home, namespace, only_run, dry_run, step, failures)
    runs += orphan_runs
    entries += orphan_entries
    if failures:
        raise InfrastructureError(f"{len(failures)} ledger entries could not be reverted (the next sweep retries): {'; '.join(failures)}")
    return runs, entries


def sweep_marked(
    kube: Kube, home: str, namespace: str | None, only_run: str | None, dry_run: bool, step: str, failures: list[str]
) -> tuple[int, int]:
    """Workloads still carrying a run's shim whose ledger is gone (`steps.run.orphans`): reverted from
    the mark on the object itself, each on its own. Returns (runs, workloads) reverted."""
    runs: set[str] = set()
    reverted = 0
    for orphan in orphans.find(kube, home, namespace, only_run):
        entry = marked_entry_id(orphan.ref)
        if dry_run:
            emit(step, EventName.WOULD_REVERT, run_id=orphan.run_id, entry=entry, kind=L.WORKLOAD_SHIM, reason=LEDGER_GONE)
            continue
        try:
            outcome = revert_marked_workload(kube, orphan.ref, orphan.run_id, home)
        except (StepError, NotFound) as error:
            failures.append(f"{orphan.run_id}/{entry}: {error}")
            emit(step, EventName.REVERT_FAILED, run_id=orphan.run_id, entry=entry, kind=L.WORKLOAD_SHIM, error=str(error))
            continue
        if outcome.action != "refused":
            runs.add(orphan.run_id)
            reverted += 1
        emit(
            step,
            event_name(outcome),
            run_id=orphan.run_id,
            entry=entry,
            kind=L.WORKLOAD_SHIM,
            action=outcome.action,
            reason=LEDGER_GONE,
            target=f"{orphan.ref.plural}/{orphan.ref.namespace}/{orphan.ref.name}",
        )
    return len(runs), reverted
