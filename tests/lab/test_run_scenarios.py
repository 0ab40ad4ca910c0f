"""End to end: the scenarios run by the local runner (`faultflow run … --lab`) against the lab, the
way `make demo` and a user run them — every stage is the real step command.

gpu-fault for XID 79 and 48 (fatal in NVSentinel's catalogue: cordon, drain, the worker comes back on
another node) and 94 (non-fatal: no cordon within the window; the worker crash-loops until cleanup
turns the toggle off). One GPU worker, so the outage is visible in the report. Then the network
scenarios: their objects are real API objects checked by the real API server; the lab has no CNI or
Chaos Mesh daemon to enforce them, so inference is not actually cut or degraded.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from lab.run_lock import lease_ref
from lab.run_record import workflow_ref
from steps.gpu import nvsentinel as nv
from steps.gpu import toggle
from steps.gpu.xids import lookup
from steps.kube.client import Ref
from steps.run import ledger as L
from tests.cli import run_cli
from tests.lab.run_checks import release_quarantined, wait_baseline


@pytest.mark.parametrize("xid", [79, 48, 94])
def test_gpu_fault(lab, tmp_path: Path, xid: int) -> None:
    wait_baseline(lab)
    kube, state = lab.kube(), lab.state
    dgd = lab.dgd_ref()
    spec_before = json.dumps(kube.get(dgd)["spec"], sort_keys=True)
    fatal = lookup(xid).fatal
    evidence = tmp_path / "evidence"

    result = run_cli(
        "run", "gpu-fault", "--lab", str(lab.root), "-p", f"xid={xid}", "-p", "cordon-timeout=5s", "--evidence", str(evidence), timeout=400
    )
    node = (evidence / "preflight" / "node").read_text().strip()
    # NVSentinel's GPU reset releases the node it quarantined (only that one, only for a fatal XID).
    assert release_quarantined(lab) == ([node] if fatal else [])
    assert not kube.get(Ref("v1", "nodes", None, node))["spec"].get("unschedulable")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "# gpu-fault: PASSED" in result.stdout
    report = json.loads((evidence / "report" / "report.json").read_text())
    # issue 15 item 4: the workers' logs were followed from before the fault (watch-reach), so the
    # evidence survives NVSentinel's drain, however fast the SIMULATOR quarantines the node.
    reach = next(c for c in report["checks"] if c["name"] == "fault_reached_workload")
    assert reach["status"] == "passed", reach
    assert (evidence / "watch-reach" / "watching").is_file()
    timeline = [e["event"] for e in report["timeline"]]
    assert "fault_injected" in timeline and "dgd_restored" in timeline
    if fatal:
        assert (
            timeline.index("fault_injected")
            < timeline.index("node_cordoned")
            < timeline.index("pods_evicted")
            < timeline.index("dgd_restored")
        )
        assert (report["figures"]["time_to_recovery_s"] or 0) > 0
    else:
        assert "node_cordoned" not in timeline
    for name in ("report.json", "junit.xml", "timeline.png", "summary.md"):
        assert (evidence / "report" / name).is_file()
    # What NVSentinel was expected to do on this node (its GPUs are in gpu_metadata.json) and why.
    assert report["nvsentinel"]["expected_action"] == lookup(xid).nvsentinel_action
    assert report["nvsentinel"]["expect"] == "cordon" and report["nvsentinel"]["gpu_metadata"] is True
    assert f"NVSentinel: expected {lookup(xid).nvsentinel_action}" in (evidence / "report" / "summary.md").read_text()

    # Nothing of the run is left: the DGD as before, the toggle off, no active ledger entry, no lock.
    assert json.dumps(kube.get(dgd)["spec"], sort_keys=True) == spec_before
    run_name = report["run_id"]
    ledger = L.LedgerStore(kube).load(state["namespace"], run_name)
    assert ledger is not None and ledger.entries and not ledger.active()
    assert kube.list(lease_ref(state["namespace"], ""))["items"] == []
    assert kube.get(workflow_ref(state["namespace"], run_name))["status"]["phase"] == "Succeeded"
    toggle_file = lab.node_file(node, "/var/lib/faultflow/toggle")
    assert not toggle_file.exists() or not toggle.read(toggle_file).on


def test_cuda_only(lab, tmp_path: Path) -> None:
    """CUDA calls fail for the hold, no XID line: nothing tells NVSentinel, so no node is cordoned. The
    toggle-on stage announces the fault (it had no fault_injected event, so the whole run counted as
    baseline and the report failed its own baseline check)."""
    wait_baseline(lab)
    kube = lab.kube()
    dgd = lab.dgd_ref()
    spec_before = json.dumps(kube.get(dgd)["spec"], sort_keys=True)
    evidence = tmp_path / "evidence"
    result = run_cli("run", "cuda-only", "--lab", str(lab.root), "-p", "hold=3s", "--evidence", str(evidence), timeout=400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    report = json.loads((evidence / "report" / "report.json").read_text())
    injected = [e for e in report["timeline"] if e["event"] == "fault_injected"]
    assert [(e.get("step"), e.get("kind")) for e in injected] == [("toggle-on", "cuda")], injected
    checks = {c["name"]: c["status"] for c in report["checks"]}
    assert checks["fault_reached_workload"] == "passed" and checks["fault_injected"] == "passed", checks
    assert "node_cordoned" not in [e["event"] for e in report["timeline"]]
    node = (evidence / "preflight" / "node").read_text().strip()
    assert json.dumps(kube.get(dgd)["spec"], sort_keys=True) == spec_before
    toggle_file = lab.node_file(node, "/var/lib/faultflow/toggle")
    assert not toggle_file.exists() or not toggle.read(toggle_file).on


def test_breaker_headroom_refusal(lab, tmp_path: Path) -> None:
    """fault-quarantine's maxNodes = 1: the run's own cordon would trip the breaker, so preflight refuses."""
    wait_baseline(lab)
    kube = lab.kube()
    config = Ref("v1", "configmaps", lab.state["nvsentinel_namespace"], nv.FAULT_QUARANTINE_CONFIGMAP)
    before = kube.get(config)["data"]
    tight = before[nv.FAULT_QUARANTINE_KEY].replace("[circuitBreaker]\n", "[circuitBreaker]\nmaxNodes = 1\n")
    kube.merge_patch(config, {"data": {nv.FAULT_QUARANTINE_KEY: tight}})
    try:
        result = run_cli("run", "xid-only", "--lab", str(lab.root), "-p", "xid=79", "--evidence", str(tmp_path / "evidence"), timeout=400)
    finally:
        kube.merge_patch(config, {"data": before})
    assert result.returncode != 0
    assert "would trip NVSentinel's circuit breaker" in result.stdout and "maxNodes 1" in result.stdout
    assert not any(n["spec"].get("unschedulable") for n in kube.list(Ref("v1", "nodes", None, ""))["items"])


def test_network_degrade(lab, tmp_path: Path) -> None:
    """The NetworkChaos objects are created (accepted by the real Chaos Mesh CRD), held, healed; the
    lab has no Chaos Mesh daemon, so the traffic is not actually degraded — the report says so."""
    wait_baseline(lab)
    kube = lab.kube()
    evidence = tmp_path / "evidence"
    result = run_cli(
        "run", "network-degrade", "--lab", str(lab.root), "-p", "hold=2s", "-p", "action=loss", "--evidence", str(evidence), timeout=400
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    timeline = [e["event"] for e in json.loads((evidence / "report" / "report.json").read_text())["timeline"]]
    assert timeline.index("fault_injected") < timeline.index("fault_cleared")
    chaos = kube.list(Ref("chaos-mesh.org/v1alpha1", "networkchaos", lab.namespace, ""))["items"]
    assert chaos == []  # healed


def test_network_partition(lab, tmp_path: Path) -> None:
    """Frontend cut from the workers: the policies select the pods by the operator's labels and their
    ipBlocks (from the nodes' pod CIDRs) allow none of the workers' pod IPs — verify-partition checks
    that against the pods as the kubelet reports them — then heal leaves no policy behind."""
    wait_baseline(lab)
    kube = lab.kube()
    policies = Ref("networking.k8s.io/v1", "networkpolicies", lab.namespace, "")
    assert kube.list(policies)["items"] == []
    evidence = tmp_path / "evidence"
    result = run_cli(
        "run",
        "network-partition",
        "--lab",
        str(lab.root),
        "-p",
        "hold=2s",
        "-p",
        "partition=frontend-worker",
        "--evidence",
        str(evidence),
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "# network-partition: PASSED" in result.stdout
    verified = json.loads((evidence / "verify-partition" / "verify.json").read_text())
    assert all(c["passed"] for c in verified), verified
    kinds = {c["name"].split(":")[1] for c in verified}
    assert {"selects_pods", "peers_exist", "to_cut", "from_cut", "dns_allowed", "api_server_allowed"} <= kinds
    # The pods' IPs lie in the nodes' pod CIDRs, one address per pod (what makes the ipBlock check mean something).
    pods = kube.list(Ref("v1", "pods", lab.namespace, ""))["items"]
    cidrs = {n["metadata"]["name"]: ipaddress.ip_network(n["spec"]["podCIDR"]) for n in kube.list(Ref("v1", "nodes", None, ""))["items"]}
    ips = [p["status"]["podIP"] for p in pods if p.get("status", {}).get("podIP")]
    assert len(ips) == len(set(ips)) >= 2
    assert all(ipaddress.ip_address(p["status"]["podIP"]) in cidrs[p["spec"]["nodeName"]] for p in pods if p["status"].get("podIP"))
    timeline = [e["event"] for e in json.loads((evidence / "report" / "report.json").read_text())["timeline"]]
    assert timeline.index("fault_injected") < timeline.index("fault_cleared")
    assert kube.list(policies)["items"] == []  # healed
