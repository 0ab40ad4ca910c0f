"""`faultflow lab up|status|down`: idempotent up, what status reports, and nothing left behind by down.
The lab here runs DGD v1alpha1, and a whole gpu-fault run goes through it the way it would go through
any cluster: `faultflow run --kubeconfig … --node-root …` with every parameter given."""

from __future__ import annotations

import json
import urllib.request

from lab.cli import group_members
from tests.cli import run_cli


def test_up_status_down_leaves_no_process_and_no_file(tmp_path):
    lab_dir = tmp_path / ".lab"
    first = run_cli(
        "lab",
        "up",
        "--dir",
        str(lab_dir),
        "--gpu-nodes",
        "2",
        "--workers",
        "1",
        "--dgd-version",
        "v1alpha1",
        "--nvsentinel",
        json.dumps({"breaker_percentage": 100}),
    )  # 1 of 2 cordoned must not trip it
    assert first.returncode == 0, first.stdout + first.stderr
    assert "lab: up in" in first.stdout and "lab_up_s: " in first.stdout
    state = json.loads((lab_dir / "state.json").read_text())
    supervisor = state["pid"]
    try:
        assert (lab_dir / "kubeconfig").is_file() and state["dgd_version"] == "v1alpha1"
        assert set(state["processes"].values()) <= set(group_members(supervisor))  # etcd, apiserver: its group
        again = run_cli("lab", "up", "--dir", str(lab_dir))
        assert again.returncode == 0 and "lab: already up" in again.stdout
        assert json.loads((lab_dir / "state.json").read_text())["pid"] == supervisor  # nothing new started

        status = run_cli("lab", "status", "--dir", str(lab_dir), "--json")
        assert status.returncode == 0, status.stderr
        view = json.loads(status.stdout)
        assert {n["name"] for n in view["nodes"]} == {"gpu-0", "gpu-1", "cpu-0"}
        workers = [p for p in view["pods"] if "vllmworker" in p["name"]]
        assert len(workers) == 1 and workers[0]["ready"] and workers[0]["node"].startswith("gpu-")
        with urllib.request.urlopen(
            urllib.request.Request(
                f"{state['frontend_url']}/v1/completions",
                data=b'{"model": "m", "prompt": "hi", "max_tokens": 2}',
                headers={"Content-Type": "application/json"},
            ),
            timeout=10,
        ) as reply:
            assert workers[0]["name"] in json.loads(reply.read())["choices"][0]["text"]  # served by the worker
        pids = set(group_members(supervisor))
        assert len(pids) >= 4  # supervisor, etcd, kube-apiserver, the worker process
        run_by_kubeconfig(lab_dir, state, tmp_path / "evidence")
    finally:
        down = run_cli("lab", "down", "--dir", str(lab_dir))
    assert down.returncode == 0, down.stderr
    assert "lab: down" in down.stdout
    assert group_members(supervisor) == [] and not lab_dir.exists()
    gone = run_cli("lab", "status", "--dir", str(lab_dir))
    assert gone.returncode == 1 and "lab is down" in gone.stderr
    assert run_cli("lab", "down", "--dir", str(lab_dir)).stdout.strip() == "lab: not up"


def test_up_refuses_bad_simulator_settings(tmp_path):
    bad = run_cli("lab", "up", "--dir", str(tmp_path / ".lab"), "--nvsentinel", '{"no_such_delay": 1}')
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".lab").exists()


def run_by_kubeconfig(lab_dir, state: dict, evidence) -> None:
    """gpu-fault, XID 79, on the v1alpha1 DGD, told where everything is instead of reading the lab's
    state: the cordon and the recovery come from the simulators, the rest from the real steps."""
    parameters = {
        "namespace": state["namespace"],
        "target": f"dgd/{state['dgd']}",
        "dgd-version": "v1alpha1",
        "frontend-url": state["frontend_url"],
        "nvsentinel-namespace": state["nvsentinel_namespace"],
        "xid": "79",
        "cordon-timeout": "60s",
        "eviction-timeout": "120s",
        "recovery-deadline": "120",
    }
    result = run_cli(
        "run",
        "gpu-fault",
        "--kubeconfig",
        str(lab_dir / "kubeconfig"),
        "--node-root",
        str(lab_dir / "nodes"),
        *(a for k, v in parameters.items() for a in ("-p", f"{k}={v}")),
        "--evidence",
        str(evidence),
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "# gpu-fault: PASSED" in result.stdout
    timeline = [e["event"] for e in json.loads((evidence / "report" / "report.json").read_text())["timeline"]]
    assert timeline.index("fault_injected") < timeline.index("node_cordoned") < timeline.index("dgd_restored")
