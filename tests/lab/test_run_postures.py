"""End to end against a lab whose NVSentinel runs monitor-only: the xid-only scenario expects what
NVSentinel really does there (its finding recorded, no cordon), and a repeat of the same XID on the
same GPU inside NVSentinel's dedup window is refused before anything is injected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps.gpu import nvsentinel as nv
from steps.kube.client import Ref
from tests.cli import run_cli
from tests.lab.run_checks import LAB_NVSENTINEL, Lab, lab_down, wait_baseline


@pytest.fixture(scope="module")
def monitor_only_lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("postures") / ".lab"
    # NVSentinel's own 3-minute dedup window (the shared lab config turns dedup off for the matrices).
    config = json.dumps({**json.loads(LAB_NVSENTINEL), "posture": "monitor-only", "dedup_window_s": 180})
    up = run_cli("lab", "up", "--dir", str(root), "--workers", "1", "--nvsentinel", config)
    assert up.returncode == 0, up.stdout + up.stderr
    lab = Lab(root, json.loads((root / "state.json").read_text()))
    try:
        yield lab
    finally:
        lab_down(lab)


def test_monitor_only_posture_then_a_deduplicated_repeat(monitor_only_lab, tmp_path: Path) -> None:
    lab = monitor_only_lab
    wait_baseline(lab)
    kube = lab.kube()
    first = tmp_path / "first"
    result = run_cli(
        "run", "xid-only", "--lab", str(lab.root), "-p", "xid=79", "-p", "cordon-timeout=20s", "--evidence", str(first), timeout=400
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    node = (first / "preflight" / "node").read_text().strip()
    assert (first / "preflight" / "expect").read_text().strip() == "annotate"  # --expect auto read fault-quarantine's config
    obj = kube.get(Ref("v1", "nodes", None, node))
    assert not obj["spec"].get("unschedulable") and obj["metadata"]["labels"][nv.STATE_LABEL] == "quarantined"
    report = json.loads((first / "report" / "report.json").read_text())
    assert report["nvsentinel"]["expect"] == "annotate" and report["nvsentinel"]["expected_action"] == "RESTART_BM"
    assert (first / "wait-for-cordon" / "outcome").read_text().strip() == "annotated"

    # The same XID on the same GPU of the same node (no cordon moved the worker) inside 3 minutes.
    second = run_cli("run", "xid-only", "--lab", str(lab.root), "-p", "xid=79", "--evidence", str(tmp_path / "second"), timeout=400)
    assert second.returncode != 0
    assert "dedup window" in second.stdout and "--wait-dedup" in second.stdout
    assert not (tmp_path / "second" / "inject-xid").exists() or not any((tmp_path / "second" / "inject-xid").iterdir())
