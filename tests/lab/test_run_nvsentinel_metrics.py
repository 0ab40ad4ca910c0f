"""End to end with the lab's real Prometheus scraping the NVSentinel simulator: the report sets
NVSentinel's own quarantine and eviction durations beside ours, and a repeat NVSentinel suppressed is
reported as deduplicated from NVSentinel's own counter — not as "NVSentinel failed".

The repeat is what a platform team hits after upgrading NVSentinel (dedup arrived with PR #1283)
while faultflow is still told `dedup-window=0` ("NVSentinel runs without dedup"): preflight lets the
repeat through, NVSentinel stores it without acting, wait-for-cordon sees no quarantine. Between the
two runs a person uncordons the node by hand — NVSentinel's documented way to cancel a break-fix —
which clears its quarantine but keeps the node condition and the dedup tracker (only a healthy event
clears those). One GPU node, so the worker comes back to that node once it is uncordoned.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from lab.nvsentinel_simulator import MANUAL_UNCORDON_ANNOTATION
from lab.processes import wait_until
from steps.gpu import nvsentinel as nv
from steps.kube.client import Ref
from tests.cli import run_cli
from tests.lab.run_checks import Lab, lab_down, wait_baseline

# NVSentinel's default 3-minute dedup (both runs fall inside it); one GPU node, so no breaker. Its
# journal poll (chart: 15 s) stands at 8 s: wait-for-cordon must have counted the node's workers before
# the drain, and a step takes seconds to start on a loaded 2-core machine.
NVSENTINEL = json.dumps(
    {"detect_delay_s": 8, "quarantine_delay_s": 0.5, "drain_delay_s": 0.5, "dedup_window_s": 180, "breaker_enabled": False}
)


@pytest.fixture(scope="module")
def one_node_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("nvsentinel-metrics") / ".lab"
    up = run_cli("lab", "up", "--dir", str(root), "--gpu-nodes", "1", "--workers", "1", "--nvsentinel", NVSENTINEL)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "prometheus     http://127.0.0.1:" in up.stdout
    lab = Lab(root, json.loads((root / "state.json").read_text()))
    try:
        yield lab
    finally:
        lab_down(lab)


def uncordon_when_drained(lab: Lab, node: str, evidence: Path, done: threading.Event) -> None:
    """A person's `kubectl uncordon` once the run has seen the workers leave the drained node."""
    events = evidence / "wait-for-cordon" / "step-events.jsonl"

    def evicted() -> bool | None:
        try:
            return True if '"pods_evicted"' in events.read_text() else None
        except FileNotFoundError:
            return None

    wait_until(evicted, what="the run's pods_evicted", timeout_s=300, interval_s=0.2)
    # Then NVSentinel's own drain must have finished (its state label), as a person would check: an
    # uncordon while the drainer still waits for the pods cancels its break-fix before it records the
    # eviction's duration.
    ref = Ref("v1", "nodes", None, node)

    def drained() -> bool | None:
        return True if lab.kube().get(ref)["metadata"].get("labels", {}).get(nv.STATE_LABEL) == "drain-succeeded" else None

    wait_until(drained, what="NVSentinel's drain-succeeded", timeout_s=120, interval_s=0.2)
    lab.kube().merge_patch(ref, {"spec": {"unschedulable": None}})
    done.set()


def test_nvsentinel_mttr_beside_ours_then_a_suppressed_repeat_reported_as_deduplicated(one_node_lab, tmp_path: Path) -> None:
    lab = one_node_lab
    wait_baseline(lab)
    node = lab.gpu_nodes()[0]
    kube = lab.kube()
    first = tmp_path / "first"
    uncordoned = threading.Event()
    person = threading.Thread(target=uncordon_when_drained, args=(lab, node, first, uncordoned), daemon=True)
    person.start()
    result = run_cli("run", "xid-only", "--lab", str(lab.root), "-p", "xid=79", "--evidence", str(first), timeout=400)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    assert uncordoned.is_set()
    report = json.loads((first / "report" / "report.json").read_text())
    mttr = report["nvsentinel_mttr"]
    assert mttr["status"] == "available", mttr
    assert mttr["prometheus_url"] == lab.state["prometheus_url"] and mttr["node"] == node
    quarantine, eviction = mttr["quarantine"], mttr["eviction"]
    assert quarantine["observations"] == 1 and eviction["observations"] == 1
    # NVSentinel's clock starts at its own detection, ours at the injection: theirs is the shorter one.
    assert 0 < quarantine["nvsentinel_s"] < quarantine["ours_s"]
    assert 0 < eviction["nvsentinel_s"] and eviction["ours_s"] is not None
    assert mttr["deduplicated"] == 0
    summary = (first / "report" / "summary.md").read_text()
    assert "NVSentinel's MTTR (Prometheus" in summary and "- quarantine: NVSentinel " in summary
    print(
        f"\nnvsentinel_quarantine_s: {quarantine['nvsentinel_s']:.3f} (ours {quarantine['ours_s']:.3f})"
        f"\nnvsentinel_eviction_s: {eviction['nvsentinel_s']:.3f} (ours {eviction['ours_s']:.3f})"
    )

    # The manual uncordon cancelled NVSentinel's quarantine; its condition still names XID 79.
    obj = kube.get(Ref("v1", "nodes", None, node))
    assert obj["metadata"]["annotations"].get(MANUAL_UNCORDON_ANNOTATION) == "true"
    assert nv.STATE_LABEL not in obj["metadata"].get("labels", {}) and nv.xid_condition_set(obj)
    wait_baseline(lab)

    second = tmp_path / "second"
    result = run_cli(
        "run",
        "xid-only",
        "--lab",
        str(lab.root),
        "-p",
        "xid=79",
        "-p",
        "dedup-window=0",
        "-p",
        "cordon-timeout=10s",
        "--evidence",
        str(second),
        timeout=400,
    )
    assert result.returncode == 1, result.stdout[-4000:] + result.stderr
    assert any((second / "inject-xid").iterdir()), "the repeat was injected"
    report = json.loads((second / "report" / "report.json").read_text())
    assert report["nvsentinel"]["outcome"] == "deduplicated", report["nvsentinel"]
    assert "nvsentinel_platform_connector_dedup_store_and_analyse_total" in report["nvsentinel"]["deduplicated_evidence"]
    mttr = report["nvsentinel_mttr"]
    assert mttr["deduplicated"] == 1 and mttr["quarantine"]["observations"] == 0
    summary = (second / "report" / "summary.md").read_text()
    assert "; deduplicated (NVSentinel's platform-connectors stored 1 repeat(s) of ErrorCode 79 without acting" in summary
    print(next(line for line in summary.splitlines() if line.startswith("NVSentinel: expected")))
    assert not kube.get(Ref("v1", "nodes", None, node))["spec"].get("unschedulable")
