"""preflight and wait-for-cordon hold what NVSentinel really does (nvsentinel-2026-12.md §3): opt-out
nodes, breaker headroom, the dedup window, postures, and the expected action — against a real
kube-apiserver, with NVSentinel's objects written as it writes them (tests/steps/cluster_world.py)."""

from __future__ import annotations

import json
import time

from steps.gpu import nvsentinel as nv
from steps.kube.client import Ref
from tests.steps.test_gpu_cluster import events, make_world
from tests.support.cluster_world import simulate_nvsentinel_quarantine

FQ_TOML = """label-prefix = "k8saas.nvidia.com/"

[circuitBreaker]
enabled = true
percentage = {percentage}
{max_nodes}

[[rule-sets]]
name = "Syslog fatal error ruleset"

[rule-sets.cordon]
shouldCordon = {cordon}
"""


def install_nvsentinel(kube, ns: str, node: str, percentage: int = 100, max_nodes: int = 0, cordon: bool = True) -> None:
    """What preflight reads of an installed NVSentinel: the breaker ConfigMap, fault-quarantine's
    config.toml and a Running syslog-health-monitor pod on the node."""
    kube.create(Ref("v1", "namespaces", None, ""), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.create(Ref("v1", "serviceaccounts", ns, ""), {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})
    kube.create(
        Ref("v1", "configmaps", ns, ""),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": nv.CIRCUIT_BREAKER_CONFIGMAP}, "data": {"status": "CLOSED"}},
    )
    toml = FQ_TOML.format(percentage=percentage, max_nodes=f"maxNodes = {max_nodes}" if max_nodes else "", cordon=str(cordon).lower())
    kube.create(
        Ref("v1", "configmaps", ns, ""),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": nv.FAULT_QUARANTINE_CONFIGMAP}, "data": {"config.toml": toml}},
    )
    pod = kube.create(
        Ref("v1", "pods", ns, ""),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "shm", "labels": {"app.kubernetes.io/name": "syslog-health-monitor"}},
            "spec": {"nodeName": node, "containers": [{"name": "shm", "image": "nvsentinel/syslog-health-monitor"}]},
        },
    )
    kube.request(
        "PATCH",
        Ref("v1", "pods", ns, pod["metadata"]["name"]).path() + "/status",
        content_type="application/merge-patch+json",
        body={"status": {"phase": "Running"}},
    )


def run_preflight(c, w, nvs: str, *extra: str, run: str | None = None):
    return c.faultflow(
        "step",
        "preflight",
        "--run-id",
        run or w.run,
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
        "--node",
        w.node,
        "--xid",
        "48",
        "--toggle-dir",
        str(w.toggle_dir),
        "--nvsentinel-namespace",
        nvs,
        *extra,
    )


def set_condition(kube, node: str, message: str, age_s: float) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age_s))
    kube.request(
        "PATCH",
        f"/api/v1/nodes/{node}/status",
        content_type="application/strategic-merge-patch+json",
        body={
            "status": {
                "conditions": [
                    {
                        "type": nv.XID_CONDITION,
                        "status": "True",
                        "reason": "SysLogsXIDErrorIsNotHealthy",
                        "message": message,
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                    }
                ]
            }
        },
    )


def test_preflight_refuses_an_opted_out_node_unless_nothing_is_expected(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    nvs = f"nvs-{unique}"
    install_nvsentinel(w.kube, nvs, w.node)
    w.kube.merge_patch(Ref("v1", "nodes", None, w.node), {"metadata": {"labels": {nv.OPT_OUT_LABEL: "false"}}})
    refused = run_preflight(c, w, nvs, "--expect", "cordon")
    assert refused.returncode == 1 and "opted out of NVSentinel" in refused.stderr and "--expect none" in refused.stderr
    assert w.kube.get_or_none(Ref("v1", "configmaps", w.ns, f"faultflow-run-{w.run}")) is None  # nothing written
    allowed = run_preflight(c, w, nvs, "--expect", "none")
    assert allowed.returncode == 0, allowed.stderr
    passed = next(json.loads(line) for line in allowed.stdout.splitlines() if '"preflight_passed"' in line)
    assert passed["expect"] == "none"


def test_preflight_refuses_a_run_that_would_trip_the_breaker(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    gpu_nodes = w.kube.list(Ref("v1", "nodes", None, ""), label_selector="nvidia.com/gpu.present=true")["items"]
    cordoned = sum(1 for n in gpu_nodes if (n.get("spec") or {}).get("unschedulable"))
    tight, loose = f"nvs-{unique}", f"nvs2-{unique}"
    install_nvsentinel(w.kube, tight, w.node, percentage=100, max_nodes=cordoned + 1)  # this run's cordon reaches it
    install_nvsentinel(w.kube, loose, w.node, percentage=100, max_nodes=cordoned + 2)
    refused = run_preflight(c, w, tight, "--expect", "cordon")
    assert refused.returncode == 1, refused.stderr
    assert "would trip NVSentinel's circuit breaker" in refused.stderr and "maxNodes" in refused.stderr
    assert "uncordon" in refused.stderr
    allowed = run_preflight(c, w, loose)  # --expect auto: fault-quarantine's rulesets cordon
    assert allowed.returncode == 0, allowed.stderr
    passed = next(json.loads(line) for line in allowed.stdout.splitlines() if '"preflight_passed"' in line)
    assert passed["expect"] == "cordon" and "breaker threshold" in passed["breaker"]
    assert (tmp_path / "none").exists() is False


def test_preflight_refuses_a_repeat_inside_the_dedup_window_and_waits_with_the_flag(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    nvs = f"nvs-{unique}"
    install_nvsentinel(w.kube, nvs, w.node)
    assert run_preflight(c, w, nvs).returncode == 0  # an earlier run: its ledger is the history
    again = run_preflight(c, w, nvs, run=f"{w.run}-b")
    assert again.returncode == 1 and "dedup window" in again.stderr and "--wait-dedup" in again.stderr
    other_xid = c.faultflow(
        "step",
        "preflight",
        "--run-id",
        f"{w.run}-c",
        "--namespace",
        w.ns,
        "--target",
        "dgd/llm",
        "--node",
        w.node,
        "--xid",
        "79",
        "--toggle-dir",
        str(w.toggle_dir),
        "--nvsentinel-namespace",
        nvs,
    )
    assert other_xid.returncode == 0, other_xid.stderr  # another error code is not a repeat
    unchecked = run_preflight(c, w, nvs, "--dedup-window", "0", run=f"{w.run}-d")  # 0: no check; a fresh history entry
    assert unchecked.returncode == 0, unchecked.stderr
    waited = run_preflight(c, w, nvs, "--dedup-window", "8s", "--wait-dedup", run=f"{w.run}-e")
    assert waited.returncode == 0, waited.stderr
    first = json.loads(waited.stdout.splitlines()[0])
    assert first["event"] == "waiting_for_dedup_window" and 0 < first["wait_s"] <= 8 and "run ledger" in first["evidence"]


def test_expect_and_its_alias_must_agree(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    both = run_preflight(c, w, "nvsentinel", "--expect", "cordon", "--expect-remediation=false")
    assert both.returncode == 2 and "contradicts" in both.stderr


def test_wait_for_cordon_annotate_posture(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    node = Ref("v1", "nodes", None, w.node)
    # NVSentinel dry-run / monitor-only: the finding recorded, no cordon.
    w.kube.merge_patch(
        node,
        {
            "metadata": {
                "annotations": {nv.EVENT_ANNOTATION: json.dumps([{"errorCode": ["79"]}])},
                "labels": {nv.STATE_LABEL: "quarantined"},
            }
        },
    )
    done = c.faultflow(
        "step",
        "wait-for-cordon",
        "--node",
        w.node,
        "--xid",
        "79",
        "--expect",
        "annotate",
        "--timeout",
        "10s",
        "--outputs-dir",
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stderr
    assert "node_annotated" in events(done.stdout) and (tmp_path / "out" / "outcome").read_text() == "annotated"
    check = next(json.loads(line) for line in done.stdout.splitlines() if '"check_passed"' in line)
    assert check["check"] == "nvsentinel_action" and check["expect"] == "annotate" and check["expected_action"] == "RESTART_BM"
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)  # a cordon is wrong under annotate
    wrong = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--expect", "annotate", "--timeout", "10s")
    assert wrong.returncode == 1 and "cordoned although" in wrong.stderr


def test_wait_for_cordon_expect_none_and_the_alias(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    quiet = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--expect-remediation=false", "--timeout", "1s")
    assert quiet.returncode == 0 and "node_not_cordoned" in events(quiet.stdout)
    simulate_nvsentinel_quarantine(w.kube, w.node, 79)
    loud = c.faultflow("step", "wait-for-cordon", "--node", w.node, "--xid", "79", "--expect", "none", "--timeout", "5s")
    assert loud.returncode == 1 and "--expect none" in loud.stderr


def test_wait_for_cordon_reports_a_deduplicated_repeat_distinctly(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    earlier = "ErrorCode:48 PCI:0000:17:00 MESSAGE=NVRM: Xid (PCI:0000:17:00): 48, pid=1, name=p, DBE Recommended Action=COMPONENT_RESET;"
    set_condition(w.kube, w.node, earlier, age_s=30)
    args = (
        "step",
        "wait-for-cordon",
        "--node",
        w.node,
        "--xid",
        "48",
        "--expect",
        "cordon",
        "--pci",
        "0000:17:00",
        "--timeout",
        "2s",
        "--fault-time-ms",
        str(int(time.time() * 1000)),
    )
    dedup = c.faultflow(*args, "--outputs-dir", str(tmp_path / "out"))
    assert dedup.returncode == 1 and "deduplicated" in dedup.stderr and "tested nothing" in dedup.stderr
    assert "xid_deduplicated" in events(dedup.stdout) and (tmp_path / "out" / "outcome").read_text() == "deduplicated"
    # Another GPU, or the earlier event outside the window: a plain failure.
    other = c.faultflow(*[a if a != "0000:17:00" else "0000:18:00" for a in args])
    assert other.returncode == 1 and "deduplicated" not in other.stderr and "not quarantined" in other.stderr
    set_condition(w.kube, w.node, earlier, age_s=600)
    old = c.faultflow(*args)
    assert old.returncode == 1 and "deduplicated" not in old.stderr


def test_wait_for_cordon_checks_the_action_nvsentinel_chose(gpu_cluster, unique, tmp_path):
    c, w = gpu_cluster, make_world(gpu_cluster, unique, tmp_path)
    simulate_nvsentinel_quarantine(w.kube, w.node, 48)
    set_condition(
        w.kube, w.node, "ErrorCode:48 PCI:0000:17:00 MESSAGE=NVRM: Xid (PCI:0000:17:00): 48, x Recommended Action=RESTART_VM;", age_s=0
    )
    base = ("step", "wait-for-cordon", "--node", w.node, "--xid", "48", "--expect", "cordon", "--pci", "0000:17:00", "--timeout", "10s")
    mismatch = c.faultflow(*base, "--expected-action", "COMPONENT_RESET", "--expected-why", "GPU in gpu_metadata.json")
    assert mismatch.returncode == 1 and "NVSentinel chose RESTART_VM" in mismatch.stderr
    failed = next(json.loads(line) for line in mismatch.stdout.splitlines() if '"check_failed"' in line)
    assert failed["observed_action"] == "RESTART_VM" and failed["expected_why"] == "GPU in gpu_metadata.json"
    match = c.faultflow(*base, "--expected-action", "RESTART_VM")
    assert match.returncode == 0, match.stderr
