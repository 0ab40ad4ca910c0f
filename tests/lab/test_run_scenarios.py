"""End to end: the scenarios run by the local runner (`faultflow run … --lab`) against the lab, the
way `make demo` and a user run them — every stage is the real step command.

gpu-fault for XID 79 and 48 (fatal in NVSentinel's catalogue: cordon, drain, the worker comes back on
another node) and 94 (non-fatal: no cordon within the window; the worker crash-loops until cleanup
turns the toggle off). One GPU worker, so the outage is visible in the report.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab.processes import wait_until
from lab.run_lock import lease_ref
from lab.run_record import workflow_ref
from steps import ledger as L
from steps import nvsentinel, toggle
from steps.gpus import list_gpus
from steps.kmsg import write_record
from steps.kube import Ref, connect
from steps.xids import lookup
from tests.cli import FAULTFLOW

NVSENTINEL = {"detect_delay_s": 0.5, "quarantine_delay_s": 0.3, "drain_delay_s": 0.5}


def faultflow(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([FAULTFLOW, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    lab_dir = tmp_path_factory.mktemp("lab") / ".lab"
    up = faultflow("lab", "up", "--dir", str(lab_dir), "--workers", "1", "--nvsentinel", json.dumps(NVSENTINEL))
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield lab_dir, json.loads((lab_dir / "state.json").read_text())
    finally:
        down = faultflow("lab", "down", "--dir", str(lab_dir))
        assert down.returncode == 0, down.stderr


def release_node(lab_dir: Path, kube, node: str) -> None:
    """The GPU reset NVSentinel's remediation ends with (`GPU reset executed: <uuid>, success: true` in
    the kernel log): the NVSentinel simulator un-quarantines the node, so the next scenario starts clean."""
    root = lab_dir / "nodes" / node
    uuid = list_gpus(str(root / "proc"))[0].uuid
    write_record(str(root / "dev" / "kmsg"), f"<6>kernel: GPU reset executed: {uuid}, success: true\n".encode())
    ref = Ref("v1", "nodes", None, node)
    wait_until(lambda: True if not nvsentinel.is_quarantined(kube.get(ref)) and not kube.get(ref)["spec"].get("unschedulable") else None,
               what=f"{node} un-quarantined after the GPU reset", timeout_s=30)


@pytest.mark.parametrize("xid", [79, 48, 94])
def test_gpu_fault(lab, tmp_path: Path, xid: int) -> None:
    lab_dir, state = lab
    kube = connect(state["kubeconfig"])
    dgd = Ref(f"nvidia.com/{state['dgd_version']}", "dynamographdeployments", state["namespace"], state["dgd"])
    spec_before = json.dumps(kube.get(dgd)["spec"], sort_keys=True)
    fatal = lookup(xid).fatal
    evidence = tmp_path / "evidence"

    result = faultflow("run", "gpu-fault", "--lab", str(lab_dir), "-p", f"xid={xid}", "-p", "cordon-timeout=5s",
                       "--evidence", str(evidence))
    node = (evidence / "preflight" / "node").read_text().strip()
    if fatal:
        release_node(lab_dir, kube, node)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "# gpu-fault: PASSED" in result.stdout
    report = json.loads((evidence / "report" / "report.json").read_text())
    timeline = [e["event"] for e in report["timeline"]]
    assert "fault_injected" in timeline and "dgd_restored" in timeline
    if fatal:
        assert timeline.index("fault_injected") < timeline.index("node_cordoned") < timeline.index("pods_evicted") \
            < timeline.index("dgd_restored")
        assert (report["figures"]["time_to_recovery_s"] or 0) > 0
    else:
        assert "node_cordoned" not in timeline
    for name in ("report.json", "junit.xml", "timeline.png", "summary.md"):
        assert (evidence / "report" / name).is_file()

    # Nothing of the run is left: the DGD as before, the toggle off, no active ledger entry, no lock.
    assert json.dumps(kube.get(dgd)["spec"], sort_keys=True) == spec_before
    run_name = report["run_id"]
    ledger = L.LedgerStore(kube).load(state["namespace"], run_name)
    assert ledger is not None and ledger.entries and not ledger.active()
    assert kube.list(lease_ref(state["namespace"], ""))["items"] == []
    assert kube.get(workflow_ref(state["namespace"], run_name))["status"]["phase"] == "Succeeded"
    toggle_file = lab_dir / "nodes" / node / "var/lib/faultflow/toggle"
    assert not toggle_file.exists() or not toggle.read(toggle_file).on
