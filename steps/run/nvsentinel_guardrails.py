"""Preflight's NVSentinel guardrails beyond presence (steps.gpu.guardrails): opt-out nodes, breaker
headroom and the dedup window (steps.gpu.posture has the rules and their sources).

Each refusal is a CheckFailed with one line that says what to change; nothing has been written yet.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from steps.errors import CheckFailed
from steps.gpu import posture as P
from steps.gpu.expectation import expect as expected_action
from steps.kube.client import Kube, Ref
from steps.run import ledger as L


def last_injection_ms(kube: Kube, namespace: str, run_id: str, node: str, gpu: int, xid: int) -> int | None:
    """The latest moment an earlier run in this namespace may have written this XID for this GPU: the
    last time its ledger changed (the injection comes after preflight and before cleanup's toggle-off,
    so this bound never lies on the early side)."""
    latest = None
    for ledger in L.LedgerStore(kube).all(namespace):
        run = ledger.run
        if run.run_id == run_id or (run.node, run.gpu, run.xid) != (node, gpu, xid):
            continue
        stamp = max([run.created_ms, *(e.updated_ms for e in ledger.entries.values())])
        latest = stamp if latest is None else max(latest, stamp)
    return latest


def check(
    kube: Kube,
    config: P.FaultQuarantineConfig,
    posture: str,
    node_obj: dict,
    run_id: str,
    namespace: str,
    gpu: int,
    xid: int,
    dedup_window_s: float,
    wait_dedup: bool,
    emit_wait: Callable[[float, str], object],
) -> dict:
    """Refuses what NVSentinel would not act on as expected; returns facts for preflight_passed."""
    name = node_obj["metadata"]["name"]
    facts: dict = {}
    out = P.opted_out(node_obj, config)
    if out is not None:
        raise CheckFailed(f"node {name} is opted out of NVSentinel: {out}; choose another node or pass --expect none")
    fatal = expected_action(xid).fatal
    if posture == "cordon" and fatal and config.breaker_enabled:
        nodes = kube.list(Ref("v1", "nodes", None, ""), label_selector="nvidia.com/gpu.present=true").get("items") or []
        headroom = P.breaker_headroom(nodes, name, config)
        facts["breaker"] = headroom.describe(config)
        if headroom.trips:
            raise CheckFailed(
                f"this run would trip NVSentinel's circuit breaker: {headroom.describe(config)}; a tripped breaker halts "
                "every event, the healthy one that would uncordon the node included, until it is reset by hand"
            )
    if dedup_window_s > 0:
        facts["dedup_window_s"] = dedup_window_s
        now_ms = L.now_ms()
        evidence: str | None = None
        until_ms: int | None = None
        last = last_injection_ms(kube, namespace, run_id, name, gpu, xid)
        if last is not None and now_ms - last < dedup_window_s * 1000:
            evidence, until_ms = f"run ledger: this XID on GPU {gpu} of {name} at {last} ms", last + int(dedup_window_s * 1000)
        repeat = P.condition_repeat(node_obj, expected_action(xid).error_code, None, now_ms + 1000, dedup_window_s)
        if repeat is not None and until_ms is None:
            evidence, until_ms = repeat, now_ms + int(dedup_window_s * 1000)
        if evidence is not None and until_ms is not None:
            wait_s = max(0.0, (until_ms - now_ms) / 1000)
            if not wait_dedup:
                raise CheckFailed(
                    f"XID {xid} on GPU {gpu} of node {name} is inside NVSentinel's {dedup_window_s:.0f}s dedup window "
                    f"({evidence}): it would be stored, not acted on; retry in {wait_s:.0f}s or pass --wait-dedup"
                )
            emit_wait(wait_s, evidence)
            # Waiting out the window is the condition itself: time has to pass, nothing else changes it.
            time.sleep(wait_s)
            facts["dedup_waited_s"] = round(wait_s, 1)
    return facts
