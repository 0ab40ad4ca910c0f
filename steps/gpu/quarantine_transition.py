"""Whether NVSentinel's marking of a node came AFTER the fault, not before it.

A node quarantined before the fault (an earlier incident nobody released) already shows every marking
wait-for-cordon looks for; counting it would pass a run in which NVSentinel never reacted. What counts
is a transition after the fault time, dated by NVSentinel's own records:

* the quarantine: fault-quarantine's label `k8saas.nvidia.com/cordon-timestamp` (Go layout
  `2006-01-02T15-04-05Z`, UTC, whole seconds), written in the same node update as the cordon, the
  annotations and the state label, also under dry-run; removed on uncordon and written anew on the
  next quarantine (nvsentinel.md §3.2, §3.5). Further fatal events on a quarantined node only extend
  the annotation (`AlreadyQuarantined`): the timestamp stays, so they are no new quarantine. The cordon
  itself carries no time (FQ applies no taint by default, so there is no taint `timeAdded` either);
* the detection: condition `SysLogsXIDError`'s `lastTransitionTime`, or — a condition already True
  when our event came keeps its transition time and gains an entry — its `lastHeartbeatTime` together
  with an entry for our error code (and GPU).

Kubernetes times have whole seconds, so "after the fault" is "at or after the fault's second".
Without a timestamp label (not NVSentinel's contract) the marking counts only when this watch saw the
node without it first. Without a fault time (`--fault-time-ms` not given) there is nothing to
compare with and every marking counts, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from steps.gpu import nvsentinel as nv

CORDON_TIMESTAMP_FORMAT = "%Y-%m-%dT%H-%M-%SZ"


def fault_second_ms(since_ms: int) -> int:
    return since_ms - since_ms % 1000


def parse_time_ms(stamp: str | None, layout: str | None = None) -> int | None:
    """Unix ms of an RFC 3339 time (or of `layout`, UTC); None when absent or unreadable."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        if layout is not None:
            parsed = datetime.strptime(stamp, layout).replace(tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int(parsed.timestamp() * 1000)


def quarantined_at_ms(node: Mapping[str, Any]) -> int | None:
    """When fault-quarantine quarantined the node (its cordon-timestamp label)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    return parse_time_ms(labels.get(nv.CORDON_TIMESTAMP_LABEL), CORDON_TIMESTAMP_FORMAT)


class MarkingAfterFault:
    """`marked(node)` counted only when it began at or after the fault (see the module docstring).

    Call it with every state of the node the watch observes, in order: a node seen unmarked once makes
    a later marking without a timestamp a transition this watch witnessed."""

    def __init__(self, marked: Callable[[Mapping[str, Any]], bool], since_ms: int | None):
        self.marked = marked
        self.since_ms = since_ms
        self.seen_unmarked = False
        self.stale: str | None = None  # why a marking seen was not counted (for the failure message)

    def __call__(self, node: Mapping[str, Any]) -> bool:
        if not self.marked(node):
            self.seen_unmarked = True
            return False
        if self.since_ms is None:
            return True
        at_ms = quarantined_at_ms(node)
        if at_ms is not None:
            if at_ms >= fault_second_ms(self.since_ms):
                return True
            label = (node.get("metadata") or {}).get("labels", {}).get(nv.CORDON_TIMESTAMP_LABEL)
            self.stale = f"quarantined before the fault ({nv.CORDON_TIMESTAMP_LABEL}={label})"
            return False
        if self.seen_unmarked:
            return True
        self.stale = f"already marked when the watch began, and no {nv.CORDON_TIMESTAMP_LABEL} dates it after the fault"
        return False


def xid_condition_after(node: Mapping[str, Any], since_ms: int | None, error_code: str, pci: str | None = None) -> bool:
    """NVSentinel's condition reports our event: set at/after the fault, or, already True, refreshed
    at/after it with an entry for our error code (and GPU)."""
    if since_ms is None:
        return nv.xid_condition_set(node)
    floor = fault_second_ms(since_ms)
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") != nv.XID_CONDITION or condition.get("status") != "True":
            continue
        transition = parse_time_ms(condition.get("lastTransitionTime"))
        if transition is not None and transition >= floor:
            return True
        heartbeat = parse_time_ms(condition.get("lastHeartbeatTime"))
        entries = [e for e in (condition.get("message") or "").split(";") if f"ErrorCode:{error_code} " in e]
        if pci is not None:
            entries = [e for e in entries if f"PCI:{pci}" in e]
        if entries and heartbeat is not None and heartbeat >= floor:
            return True
    return False
