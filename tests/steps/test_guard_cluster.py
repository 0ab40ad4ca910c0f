"""The halt and the abort watcher against the real API server (Argo's Workflow CRD installed, no
controller): what they write is what the API server stores, and what `argo stop` itself writes.

Each test uses its own faultflow namespace (FAULTFLOW_NAMESPACE): a halt in the shared one would
refuse every other test's preflight."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from lab import tools
from steps.errors import ExitCode
from steps.guard import stop
from steps.installation_names import HALT_NAME, SCENARIO_LABEL
from steps.kube.argo import workflow_ref
from steps.kube.client import Ref
from steps.run.install import NAMESPACE_ENV
from tests.dgd_samples import dgd_v1beta1
from tests.steps.conftest import GpuCluster
from tests.support.cluster_world import dgd_ref, install_faultflow, make_gpu_node, make_namespace


@pytest.fixture(scope="module")
def argo_cluster(cluster):
    return GpuCluster("v1beta1", str(cluster.kubeconfig), cluster)


@pytest.fixture
def home(argo_cluster, unique):
    name = f"ff-{unique}"
    install_faultflow(argo_cluster.kube(), name)
    return name


def workflow(name: str, scenario: str | None = "gpu-fault", phase: str | None = None) -> dict:
    labels = {"app.kubernetes.io/part-of": "faultflow", SCENARIO_LABEL: scenario} if scenario else {}
    body = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "labels": labels},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "suspend": {}}]},
    }
    if phase:
        body["status"] = {"phase": phase}
    return body


def create_workflows(kube, home: str, *bodies: dict) -> None:
    for body in bodies:
        kube.create(workflow_ref(home), body)


def run(cluster: GpuCluster, home: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return cluster.faultflow(*args, env={NAMESPACE_ENV: home}, timeout=timeout)


def test_halt_set_status_clear(argo_cluster, home):
    kube = argo_cluster.kube()
    create_workflows(
        kube,
        home,
        workflow("run-a"),
        workflow("run-b", "network-partition"),
        workflow("done", phase="Succeeded"),
        workflow("janitor-x", scenario=None),  # not a scenario run: a halt never stops the janitor
    )
    assert run(argo_cluster, home, "halt", "--status").stdout.strip() == "no halt in force"

    result = run(argo_cluster, home, "halt", "--reason", "GPU maintenance window")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "halt_set" and sorted(events[-1]["stopped"]) == ["run-a", "run-b"]
    halt_cm = kube.get(Ref("v1", "configmaps", home, HALT_NAME))
    assert halt_cm["data"]["reason"] == "GPU maintenance window" and halt_cm["data"]["set-by"]  # the admin's user name
    for name in ("run-a", "run-b"):
        wf = kube.get(workflow_ref(home, name))
        assert wf["spec"]["shutdown"] == "Stop"
        assert wf["metadata"]["annotations"][stop.STOP_REASON_ANNOTATION] == "faultflow halt: GPU maintenance window"
    for name in ("done", "janitor-x"):
        assert "shutdown" not in kube.get(workflow_ref(home, name))["spec"], name

    status = run(argo_cluster, home, "halt", "--status")
    assert "halt in force since" in status.stdout and "GPU maintenance window" in status.stdout
    as_json = json.loads(run(argo_cluster, home, "halt", "--status", "--json").stdout)
    assert as_json["in_force"] and as_json["reason"] == "GPU maintenance window"
    listed = json.loads(run(argo_cluster, home, "faults", "list", "--json").stdout)
    assert listed[0]["kind"] == "halt" and "GPU maintenance window" in listed[0]["state"]
    janitor = run(argo_cluster, home, "step", "janitor", "--dry-run")
    assert janitor.returncode == 0, janitor.stderr
    assert "halt in force" in janitor.stderr and json.loads(janitor.stdout.splitlines()[-1])["halt"]
    # Setting it again only updates the reason (idempotent).
    assert run(argo_cluster, home, "halt", "--reason", "still").returncode == 0
    assert kube.get(Ref("v1", "configmaps", home, HALT_NAME))["data"]["reason"] == "still"

    cleared = run(argo_cluster, home, "halt", "--clear")
    assert cleared.returncode == 0 and json.loads(cleared.stdout)["was_in_force"] is True
    assert kube.get_or_none(Ref("v1", "configmaps", home, HALT_NAME)) is None
    assert run(argo_cluster, home, "halt", "--status").stdout.strip() == "no halt in force"
    assert json.loads(run(argo_cluster, home, "halt", "--clear").stdout)["was_in_force"] is False


def test_preflight_refuses_while_halted_and_runs_once_cleared(argo_cluster, home, unique):
    kube = argo_cluster.kube()
    ns, node = f"ns-{unique}", f"gpu-{unique}"
    make_namespace(kube, ns)
    make_gpu_node(kube, node)
    dgd = dgd_v1beta1(name="llm", namespace=ns)
    kube.create(dgd_ref(dgd), dgd)
    preflight = ("step", "preflight", "--run-id", f"r-{unique}", "--namespace", ns, "--target", "dgd/llm", "--node", node, "--xid", "79")
    preflight += ("--expect", "none", "--abort-if", "cordoned>1; availability<0.5 for 5s")
    assert run(argo_cluster, home, "halt", "--reason", "incident 42").returncode == 0

    refused = run(argo_cluster, home, *preflight)
    assert refused.returncode == ExitCode.CHECK_FAILED, refused.stderr
    assert refused.stderr.count("\n") == 1 and "halted" in refused.stderr and "incident 42" in refused.stderr
    ledgers = kube.list(Ref("v1", "configmaps", home, ""), label_selector="faultflow.dev/ledger=true")["items"]
    assert ledgers == []  # nothing opened, nothing injected
    network = run(
        argo_cluster, home, "step", "preflight", "--fault", "network", "--run-id", f"n-{unique}", "--namespace", ns, "--target", "dgd/llm"
    )
    assert network.returncode == ExitCode.CHECK_FAILED and "halted" in network.stderr

    assert run(argo_cluster, home, "halt", "--clear").returncode == 0
    passed = run(argo_cluster, home, *preflight, "--dry-run")
    assert passed.returncode == 0, passed.stderr


def test_our_stop_writes_what_argo_stop_writes(argo_cluster, home):
    """The real `argo stop` (Argo's CLI, talking to the API server directly) against one Workflow, ours
    against another: the same spec, and our only addition is the reason annotation."""
    kube = argo_cluster.kube()
    create_workflows(kube, home, workflow("by-argo"), workflow("by-us"), workflow("finished", phase="Failed"))
    argo = tools.ARGO_CLI_V4_0.binary
    assert argo.is_file(), f"{argo} missing: make envtest builds it"
    env = {**os.environ, "KUBECONFIG": argo_cluster.kubeconfig}
    env.pop("ARGO_SERVER", None)
    done = subprocess.run([str(argo), "stop", "by-argo", "-n", home], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stop.stop_workflow(kube, home, "by-us", "abort-if: cordoned>1").stopped
    by_argo, by_us = (kube.get(workflow_ref(home, n)) for n in ("by-argo", "by-us"))
    assert by_argo["spec"] == by_us["spec"] and by_us["spec"]["shutdown"] == "Stop"
    assert stop.argo_stop_patch() == {"spec": {"shutdown": by_argo["spec"]["shutdown"]}}
    assert by_us["metadata"]["annotations"] == {stop.STOP_REASON_ANNOTATION: "abort-if: cordoned>1"}
    # Like `argo stop`, a completed Workflow is left alone.
    result = stop.stop_workflow(kube, home, "finished", "x")
    assert not result.stopped and result.why == "already Failed"
    assert "shutdown" not in kube.get(workflow_ref(home, "finished"))["spec"]
    assert not stop.stop_workflow(kube, home, "no-such-run", "x").stopped


def test_the_watcher_stops_its_workflow_when_a_condition_holds(argo_cluster, home, unique, tmp_path):
    kube = argo_cluster.kube()
    create_workflows(kube, home, workflow(f"run-{unique}"))
    nodes = kube.list(Ref("v1", "nodes", None, ""))["items"]
    already = sum(1 for n in nodes if (n.get("spec") or {}).get("unschedulable"))
    node = f"gpu-{unique}"
    make_gpu_node(kube, node)
    out = tmp_path / "out"
    env = {**os.environ, "KUBECONFIG": argo_cluster.kubeconfig, NAMESPACE_ENV: home, "PYTHONPATH": os.getcwd()}
    from tests.support.cluster_world import FAULTFLOW

    watcher = subprocess.Popen(
        [
            *FAULTFLOW,
            "step",
            "watch-abort",
            "--abort-if",
            f"cordoned>{already} for 1s",
            "--interval",
            "0.2",
            "--run-id",
            f"run-{unique}",
            "--workflow-name",
            f"run-{unique}",
            "--outputs-dir",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # Armed and evaluating before anything is cordoned: it must not fire on its own.
        assert json.loads(watcher.stdout.readline())["event"] == "watch_armed"
        assert watcher.poll() is None
        kube.merge_patch(Ref("v1", "nodes", None, node), {"spec": {"unschedulable": True}})
        cordoned_at = time.monotonic()
        stdout, stderr = watcher.communicate(timeout=60)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert watcher.returncode == ExitCode.ABORTED, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"faultflow: error: aborted: cordoned>{already} for 1s (value {already + 1}"), stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    aborted = next(e for e in events if e["event"] == "aborted")
    assert aborted["condition"] == f"cordoned>{already} for 1s" and aborted["held_s"] >= 1
    assert any(e["event"] == "workflow_stopped" and e["stopped"] for e in events)
    assert (out / "aborted").read_text() == f"cordoned>{already} for 1s"
    wf = kube.get(workflow_ref(home, f"run-{unique}"))
    assert wf["spec"]["shutdown"] == "Stop"
    assert wf["metadata"]["annotations"][stop.STOP_REASON_ANNOTATION] == f"abort-if: cordoned>{already} for 1s"
    print(f"abort_watch_s: {time.monotonic() - cordoned_at:.2f} (cordon → workflow stopped, interval 0.2 s, for 1 s)")
    kube.merge_patch(Ref("v1", "nodes", None, node), {"spec": {"unschedulable": False}})


@pytest.mark.parametrize("abort_if", ["cordoned>100000", ""], ids=["never-fires", "no-conditions"])
def test_the_watcher_stops_quietly_on_sigterm(argo_cluster, home, unique, tmp_path, abort_if):
    """Argo ends the daemon with SIGTERM when the DAG is over: exit 0, nothing stopped. Without
    conditions it idles until then (a daemon that ends on its own fails the run under Argo v4)."""
    kube = argo_cluster.kube()
    create_workflows(kube, home, workflow(f"quiet-{unique}"))
    env = {**os.environ, "KUBECONFIG": argo_cluster.kubeconfig, NAMESPACE_ENV: home, "PYTHONPATH": os.getcwd()}
    from tests.support.cluster_world import FAULTFLOW

    watcher = subprocess.Popen(
        [*FAULTFLOW, "step", "watch-abort", "--abort-if", abort_if, "--interval", "0.2", "--run-id", "q"]
        + ["--workflow-name", f"quiet-{unique}", "--outputs-dir", str(tmp_path / "o")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert json.loads(watcher.stdout.readline())["event"] == "watch_armed"
    assert watcher.poll() is None  # still watching (or idling) until told to stop
    watcher.terminate()
    stdout, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, stderr
    assert "shutdown" not in kube.get(workflow_ref(home, f"quiet-{unique}"))["spec"]
