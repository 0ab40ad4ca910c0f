"""faultflow installed as a user installs it, its templates run by real Argo (issue 20).

One real lab per Argo line (gpu-0 + cpu-0) with Argo installed from its own manifests
(lab.argo.install), the lab's S3 repository, the steps image imported into the nodes, and faultflow
installed by `kubectl apply -k` of an overlay over the committed deploy/ that only sets `images:`
(lab.argo.faultflow). Runs are submitted with the real `argo` CLI: `argo submit -n faultflow --from
workflowtemplate/xid-only -p … --wait`, as the README tells users.

xid-only needs neither Dynamo nor NVSentinel with `expect=none`; its target is a plain Deployment
(a GPU worker by faultflow's rules) of the frontend SIMULATOR image on gpu-0, behind the Service
the template's default `frontend-url` names. XID 43: the node's device plugin ignores it (NVIDIA's
ignore list), so gpu-0's GPUs stay allocatable.

`FAULTFLOW_ARGO_LINES` (comma-separated) selects lines; the default is the newest line only, to keep
`make test` within CI's hour on a new machine (a line here costs about 7 minutes under load): the
generic emissary, retry and artifact behaviour is proven on both lines by tests/lab/test_real_argo.py,
and `FAULTFLOW_ARGO_LINES=v4.0,v3.7` runs this module on both (both passed when it landed). Needs root and
the Debian node packages, like tests/lab/test_real_argo.py. Figures are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime

import pytest

from lab import tools
from lab.argo import artifacts, faultflow
from lab.argo import cli as argo_cli
from lab.argo import install as argo_install
from lab.argo.apply import apply
from lab.gpu_nodes import bus_id
from lab.images import worker
from lab.nodes import cluster as real
from lab.processes import wait_until

# Newest line first: the one users start with.
NEWEST_FIRST = sorted(tools.ARGO_LINES, key=lambda line: tuple(int(part) for part in line[1:].split(".")), reverse=True)
LINES = tuple(line for line in os.environ.get("FAULTFLOW_ARGO_LINES", NEWEST_FIRST[0]).split(",") if line)
if unknown := set(LINES) - set(tools.ARGO_LINES):
    raise ValueError(f"FAULTFLOW_ARGO_LINES: unknown Argo line(s) {sorted(unknown)}; known: {sorted(tools.ARGO_LINES)}")
TARGET_NS = "dynamo"
GPU_NODE = "gpu-0"
WORKLOAD = "vllm-agg"  # the template's default frontend-url is http://vllm-agg-frontend.dynamo.svc:8000
XID = 43
WORKFLOW_TIMEOUT_S = 600
# Short windows so a run takes a minute or two (the defaults are sized for real clusters).
RUN_PARAMETERS = {
    "namespace": TARGET_NS,
    "target": f"deployment/{WORKLOAD}",
    "xid": str(XID),
    "expect": "none",
    "cordon-timeout": "10s",
    "recovery-deadline": "120",
    "window": "5",
}

pytestmark = pytest.mark.timeout(1500)


@dataclass
class FaultflowLab:
    cluster: real.RealCluster
    line: str
    repo: artifacts.ArtifactRepository

    def argo(self, *args: str, check: bool = True, timeout_s: float = argo_cli.TIMEOUT_S):
        return argo_cli.argo(self.cluster.kubeconfig, self.line, *args, check=check, timeout_s=timeout_s)

    def submit_and_wait(self, template: str, parameters: dict[str, str]) -> dict:
        """`argo submit --from workflowtemplate/T -p … --wait` (whatever the outcome), then `argo get`."""
        flags = [arg for name, value in parameters.items() for arg in ("-p", f"{name}={value}")]
        started = time.monotonic()
        done = self.argo(
            "submit", "-n", faultflow.NAMESPACE, "--from", f"workflowtemplate/{template}", *flags, "--wait", "-o", "name",
            check=False, timeout_s=WORKFLOW_TIMEOUT_S,
        )  # fmt: skip
        name = done.stdout.split()[0] if done.stdout.split() else ""
        assert name, f"argo submit printed no name (exit {done.returncode}): {done.stderr[-1500:]}"
        workflow = argo_cli.get(self.cluster.kubeconfig, self.line, faultflow.NAMESPACE, name)
        workflow["workflow_s"] = time.monotonic() - started  # what the test prints
        return workflow


def _workload(node: str) -> list[dict]:
    """The target: a Deployment of the frontend SIMULATOR pinned to the GPU node, and its Service."""
    labels = {"app": WORKLOAD}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": WORKLOAD, "namespace": TARGET_NS},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 1,
                        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
                        ]}}},
                        "containers": [{
                            "name": "main",
                            "image": worker.frontend_image().ref,
                            "imagePullPolicy": "Never",
                            "ports": [{"containerPort": worker.FRONTEND_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/v1/models", "port": worker.FRONTEND_PORT}, "periodSeconds": 1},
                        }],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{WORKLOAD}-frontend", "namespace": TARGET_NS},
            "spec": {"selector": labels, "ports": [{"port": worker.FRONTEND_PORT, "targetPort": worker.FRONTEND_PORT}]},
        },
    ]  # fmt: skip


def _workload_ready(cluster: real.RealCluster) -> bool | None:
    pods = cluster.rest().get(f"/api/v1/namespaces/{TARGET_NS}/pods?labelSelector=app%3D{WORKLOAD}")["items"]
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))]
    return True if ready else None


@pytest.fixture(scope="module", params=LINES)
def lab(request, tmp_path_factory):
    line = request.param
    folder = tmp_path_factory.mktemp(f"faultflow-argo-{line}")
    extra = (*argo_install.images_for(line), *faultflow.PRODUCT_BUILDS, worker.ensure_frontend)
    cluster = real.RealCluster(folder / "lab", real.plan_nodes(gpu_nodes=1, cpu_nodes=1), extra_images=extra)
    try:
        cluster.start()
        argo = argo_install.install(cluster, line)
        repo = artifacts.start(cluster)
        installed = faultflow.install(cluster, repo, folder / "overlay", faultflow.product_images())
        for obj in _workload(GPU_NODE):
            apply(cluster.rest(), obj)
        wait_until(lambda: _workload_ready(cluster), what=f"{WORKLOAD} Ready", timeout_s=180, interval_s=0.5)
        print(f"\nfigures ({line}): {real.figures_line({**cluster.figures, **argo.figures, **installed.figures})}")
        yield FaultflowLab(cluster, line, repo)
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)  # each node's image store is hundreds of MB


def _nodes(workflow: dict) -> list[dict]:
    return list(workflow["status"].get("nodes", {}).values())


def _node_named(workflow: dict, name: str) -> dict:
    return next(n for n in _nodes(workflow) if n["displayName"] == name)


def _may(lab: FaultflowLab, account: str, verb: str, resource: str) -> bool:
    """What the API server's RBAC answers for faultflow's `account` (a SubjectAccessReview)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{faultflow.NAMESPACE}:{account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{faultflow.NAMESPACE}", "system:authenticated"],
            "resourceAttributes": {"namespace": faultflow.NAMESPACE, "verb": verb, "group": "argoproj.io", "resource": resource},
        },
    }
    return bool(lab.cluster.rest().post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)["status"].get("allowed"))


def _summary(workflow: dict) -> str:
    return json.dumps(
        {
            n["displayName"]: [n["type"], n["phase"], n.get("message", ""), (n.get("outputs") or {}).get("exitCode")]
            for n in _nodes(workflow)
        }
    )


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stage_figures(workflow: dict, report: dict | None = None) -> str:
    """Per pod stage: its run (node started -> finished) and, with the report, its first event (node
    started -> the first event its step wrote after that). Argo stamps whole seconds."""
    spec = workflow["status"].get("storedWorkflowTemplateSpec") or workflow["spec"]
    steps = {t["name"]: t["container"]["command"][-1] for t in spec.get("templates", []) if "container" in t}
    events = sorted((report or {}).get("timeline", []), key=lambda e: e["time"])
    runs, starts = [], []
    for node in sorted(_nodes(workflow), key=lambda n: n.get("startedAt") or ""):
        if node["type"] != "Pod" or not node.get("startedAt"):
            continue
        started = _stamp(node["startedAt"])
        if node.get("finishedAt"):
            runs.append(f"{node['displayName']}={_stamp(node['finishedAt']) - started:.0f}")
        step = steps.get(node.get("templateName", ""))
        first = next((e["time"] for e in events if e["step"] == step and e["time"] >= started), None)
        if first is not None:
            starts.append(f"{node['displayName']}={first - started:.1f}")
    return f"stage_s: {' '.join(runs)}" + (f" | stage_first_event_s: {' '.join(starts)}" if starts else "")


def _report(lab: FaultflowLab, workflow: dict) -> dict:
    key = f"faultflow/{faultflow.NAMESPACE}/{workflow['metadata']['uid']}/report/report.json"
    return json.loads(lab.repo.s3.get_object(lab.repo.bucket, key))


def test_xid_only_runs_end_to_end_on_real_argo(lab):
    kmsg_log, _ = lab.cluster.node_paths(GPU_NODE)
    seen_before = kmsg_log.read_text(errors="replace") if kmsg_log.exists() else ""
    workflow = lab.submit_and_wait("xid-only", RUN_PARAMETERS)
    assert workflow["status"]["phase"] == "Succeeded", _summary(workflow)
    # Every node Succeeded but the daemons' pods (`load`, `watch-abort`): Argo's controller marks a
    # daemon's pod node Failed once the pod has exited, even when it stopped it itself at the DAG's end
    # (v4.0.5 operator.go, "Daemoned pod succeeded. Marking it as failed"); each exits 0 on that
    # SIGTERM, and the load's records reach the report.
    daemons = {t["name"] for t in workflow["status"]["storedWorkflowTemplateSpec"]["templates"] if t.get("daemon")}
    assert {"load", "watch-abort"} <= daemons, daemons
    daemon_pods = [n for n in _nodes(workflow) if n["type"] == "Pod" and n.get("templateName") in daemons]
    assert all(n["phase"] == "Succeeded" for n in _nodes(workflow) if n not in daemon_pods), _summary(workflow)
    assert sorted((n["templateName"], n["outputs"]["exitCode"]) for n in daemon_pods) == [("load", "0"), ("watch-abort", "0")], _summary(
        workflow
    )
    pods = {n["displayName"].split("(")[0] for n in _nodes(workflow) if n["type"] == "Pod"}  # retried: "preflight(0)"
    assert {"preflight", "steady-state", "inject-xid", "wait-for-cordon", "verify-inference", "cleanup-dgd", "report"} <= pods
    # Output parameters reach the next stage through WorkflowTaskResults that Argo's executor writes
    # under faultflow-executor (executor.serviceAccountName): the step accounts need no Argo rights.
    xid_inputs = {p["name"]: p["value"] for p in _node_named(workflow, "inject-xid")["inputs"]["parameters"]}
    assert xid_inputs["preflight-node"] == GPU_NODE, xid_inputs
    assert _may(lab, "faultflow-executor", "create", "workflowtaskresults")
    assert not _may(lab, "faultflow-preflight", "create", "workflowtaskresults")
    # The XID line reached gpu-0's kernel log (its /dev/kmsg), and only through this run.
    written = kmsg_log.read_text(errors="replace")[len(seen_before) :]
    xid_node = _node_named(workflow, "inject-xid")
    pci = next(p["value"] for p in xid_node["outputs"]["parameters"] if p["name"] == "pci")
    assert f"NVRM: Xid (PCI:{pci}): {XID}, " in written, written[-2000:]
    # GPU 0's bus id as gpu-0's driver tree lists it: inject-xid read the node's driver /proc in its pod.
    assert pci.endswith(bus_id(0, 0).split(":", 1)[1].rsplit(".", 1)[0]), pci
    # The report, built from every stage's evidence in the artifact repository, shows the injection.
    report = _report(lab, workflow)
    print(f"\nfigures ({lab.line} xid-only): workflow_s={workflow['workflow_s']:.1f} {stage_figures(workflow, report)}")
    assert any(f.endswith("/load/records.jsonl") for f in report["inputs"]["files"]), report["inputs"]
    injected = [e for e in report["timeline"] if e["event"] == "fault_injected" and e.get("kind") == "xid"]
    assert [e["xid"] for e in injected] == [XID], json.dumps(report["timeline"])[:3000]
    assert injected[0]["step"] == "inject-xid"
    assert report["verdict"] == "passed", json.dumps(report["checks"])


def _attempts(workflow: dict, stage: str) -> list[dict]:
    """The pods of a stage's Retry node, in the order they ran."""
    retry = [n for n in _nodes(workflow) if n["displayName"] == stage and n["type"] == "Retry"]
    assert len(retry) == 1, _summary(workflow)
    return sorted((workflow["status"]["nodes"][c] for c in retry[0].get("children", [])), key=lambda n: n["startedAt"])


def _exit_handler_ran(lab: FaultflowLab, workflow: dict) -> dict:
    """The exit handler's cleanup and report ran; the report is in the artifact repository."""
    ran = {n["displayName"] for n in _nodes(workflow) if n["type"] == "Pod" and n["phase"] in ("Succeeded", "Failed")}
    assert {"report"} <= ran and any(name.startswith("final-cleanup") for name in ran), _summary(workflow)
    return _report(lab, workflow)


def test_an_infrastructure_error_is_retried_with_the_rendered_backoff(lab):
    """Preflight reading NVSentinel's circuit breaker in a namespace its account may not read is an
    infrastructure error (exit 3): retried `limit` times, each wait at least the rendered backoff."""
    workflow = lab.submit_and_wait("xid-only", {**RUN_PARAMETERS, "nvsentinel-namespace": "kube-system"})
    print(f"\nfigures ({lab.line} xid-only, exit 3): workflow_s={workflow['workflow_s']:.1f} {stage_figures(workflow)}")
    assert workflow["status"]["phase"] == "Failed", _summary(workflow)
    spec = workflow["status"].get("storedWorkflowTemplateSpec") or workflow["spec"]
    strategy = next(t for t in spec["templates"] if t["name"] == "preflight")["retryStrategy"]
    attempts = _attempts(workflow, "preflight")
    assert len(attempts) == 1 + int(strategy["limit"]), _summary(workflow)
    assert {a["outputs"]["exitCode"] for a in attempts} == {"3"}, _summary(workflow)
    first = int(strategy["backoff"]["duration"].rstrip("s"))
    for n, (before, after) in enumerate(zip(attempts, attempts[1:], strict=False)):
        gap = _stamp(after["startedAt"]) - _stamp(before["finishedAt"])
        # Whole-second stamps: a second of slack.
        assert gap >= first * int(strategy["backoff"]["factor"]) ** n - 1, f"attempt {n + 1} began {gap}s after attempt {n} ended"
    report = _exit_handler_ran(lab, workflow)
    assert report["verdict"] == "failed"


def test_a_verdict_is_not_retried_and_the_exit_handler_still_reports(lab):
    """Preflight refusing its input (exit 2: a verdict) is tried once; the run fails, and the exit
    handler's cleanup and report still run."""
    workflow = lab.submit_and_wait("xid-only", {**RUN_PARAMETERS, "target": "deployment/missing"})
    print(f"\nfigures ({lab.line} xid-only, exit 2): workflow_s={workflow['workflow_s']:.1f} {stage_figures(workflow)}")
    assert workflow["status"]["phase"] == "Failed", _summary(workflow)
    attempts = _attempts(workflow, "preflight")
    assert [a["outputs"]["exitCode"] for a in attempts] == ["2"], _summary(workflow)
    report = _exit_handler_ran(lab, workflow)
    assert report["verdict"] == "failed"
    assert "fault_injected" in {c["name"] for c in report["checks"] if c["status"] == "failed"}, report["checks"]
