"""Real Argo Workflows in the real lab: the controller and executor built from source (lab.tools),
installed from Argo's own manifests (lab.argo.install), emissary in real pods on real kubelets, an
S3 artifact repository (versitygw) as the namespace's documented default, driven with the `argo` CLI.

One lab per Argo line for the module (gpu-0 and cpu-0), every test on both lines the project renders
for (v4.0 and v3.7): a line's lab, install and three workflows took 83 s on an idle 2-core machine.
`FAULTFLOW_ARGO_LINES=v4.0` (comma-separated) runs only the lines named. `make real-lab-tools` builds
both lines' binaries and images first. Needs root and the Debian node packages, like
tests/lab/test_real_cluster.py. Figures are printed, not asserted.

Issue 15 item 9: gpu-fault's inject-xid template as rendered (node-agent image, privileged, read-only
root with an emptyDir at /tmp, its podSpecPatch) runs through the real controller and emissary, and
its output parameters come back from files under /tmp.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from lab import tools
from lab.argo import artifacts, install, manifests
from lab.argo import cli as argo_cli
from lab.images import product
from lab.nodes import cluster as real
from lab.processes import wait_until
from steps.gpu import toggle
from steps.gpu.toggle_pod import TOGGLE_UID, run_to_completion, toggle_off_pod
from steps.kube.client import connect
from workflows.deploy import token_secret
from workflows.render import scenario_template
from workflows.scenarios import by_name
from workflows.stages.common import TOGGLE_DIR_PATH

NS = "argotest"
BUSYBOX = "localhost/busybox:1.35"
LINES = tuple(line for line in os.environ.get("FAULTFLOW_ARGO_LINES", ",".join(tools.ARGO_LINES)).split(",") if line)
if unknown := set(LINES) - set(tools.ARGO_LINES):
    raise ValueError(f"FAULTFLOW_ARGO_LINES: unknown Argo line(s) {sorted(unknown)}; known: {sorted(tools.ARGO_LINES)}")
# As the rendered templates retry (workflows/: exit 3 means "try again"), with a short backoff.
BACKOFF_S = 2
RETRY = {
    "limit": 2,
    "retryPolicy": "Always",
    "expression": 'lastRetry.status == "Error" || asInt(lastRetry.exitCode) == 3',
    "backoff": {"duration": f"{BACKOFF_S}s", "factor": 2},
}

# The first test also pays for the module's lab (its start and Argo's install).
pytestmark = pytest.mark.timeout(900)


@dataclass
class ArgoLab:
    cluster: real.RealCluster
    argo: install.Argo
    repo: artifacts.ArtifactRepository
    folder: Path

    def submit(self, workflow: dict) -> str:
        path = self.folder / f"{workflow['metadata']['generateName']}workflow.yaml"
        path.write_text(yaml.safe_dump(workflow, sort_keys=False))
        return argo_cli.submit(self.cluster.kubeconfig, self.argo.line, NS, path)

    def run(self, workflow: dict) -> dict:
        return argo_cli.wait(self.cluster.kubeconfig, self.argo.line, NS, self.submit(workflow))

    def argo_cmd(self, *args: str) -> str:
        return argo_cli.argo(self.cluster.kubeconfig, self.argo.line, *args).stdout


@pytest.fixture(scope="module", params=LINES)
def lab(request, tmp_path_factory):
    line = request.param
    folder = tmp_path_factory.mktemp(f"argo-{line}")
    images = (*install.images_for(line), product.ensure_node_agent)  # the node agent: the rendered inject-xid step
    cluster = real.RealCluster(folder / "lab", real.plan_nodes(gpu_nodes=1, cpu_nodes=1), extra_images=images)
    try:
        cluster.start()
        argo = install.install(cluster, line, workflow_namespaces=(NS,))
        repo = artifacts.start(cluster)
        artifacts.configure_namespace(cluster.rest(), repo, NS)
        print(f"\nfigures ({line}): {real.figures_line({**cluster.figures, **argo.figures})}")
        yield ArgoLab(cluster, argo, repo, folder)
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)  # each node's image store is hundreds of MB


def _workflow(prefix: str, templates: list[dict], entrypoint: str = "main", **spec) -> dict:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": f"{prefix}-"},
        "spec": {"entrypoint": entrypoint, "templates": templates, **spec},
    }


def _container(script: str) -> dict:
    # Always a command: without one the controller asks the image registry for the entrypoint.
    return {"image": BUSYBOX, "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", script]}


def _outputs_artifact(stage: str) -> dict:
    """A stage's outputs directory as faultflow's rendered templates store it: key only, no archive."""
    return {
        "name": "outputs",
        "path": "/tmp/faultflow/outputs",
        "archive": {"none": {}},
        "s3": {"key": f"faultflow/{{{{workflow.namespace}}}}/{{{{workflow.uid}}}}/{stage}"},
    }


def _nodes(workflow: dict) -> list[dict]:
    return list(workflow["status"].get("nodes", {}).values())


def _node(workflow: dict, display_name: str, type_: str | None = None) -> dict:
    found = [n for n in _nodes(workflow) if n["displayName"] == display_name and (type_ is None or n["type"] == type_)]
    assert len(found) == 1, f"{display_name}: {json.dumps(_nodes(workflow))[:2000]}"
    return found[0]


def _time(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _summary(workflow: dict) -> str:
    return json.dumps({n["displayName"]: [n["type"], n["phase"], n.get("message", "")] for n in _nodes(workflow)})


def test_a_dag_runs_on_real_pods_with_emissary_and_its_artifact_lands_in_s3(lab):
    workflow = _workflow(
        "dag",
        [
            {
                "name": "main",
                "dag": {
                    "tasks": [
                        {"name": "write", "template": "write"},
                        {
                            "name": "read",
                            "template": "read",
                            "depends": "write",
                            "arguments": {"artifacts": [{"name": "evidence", "from": "{{tasks.write.outputs.artifacts.outputs}}"}]},
                        },
                    ]
                },
            },
            {
                "name": "write",
                "container": _container(
                    'mkdir -p /tmp/faultflow/outputs && echo "written on $(hostname)" > /tmp/faultflow/outputs/result.txt'
                ),
                "outputs": {"artifacts": [_outputs_artifact("write")]},
            },
            {
                "name": "read",
                "inputs": {"artifacts": [{"name": "evidence", "path": "/tmp/in"}]},
                "container": _container("cat /tmp/in/result.txt > /tmp/seen.txt"),
                "outputs": {"parameters": [{"name": "seen", "valueFrom": {"path": "/tmp/seen.txt"}}]},
            },
        ],
    )
    done = lab.run(workflow)
    assert done["status"]["phase"] == "Succeeded", _summary(done)
    write, read = _node(done, "write"), _node(done, "read")
    assert write["phase"] == read["phase"] == "Succeeded"
    # The artifact is in the bucket under the key the template gave, and the next stage read it back.
    uid = done["metadata"]["uid"]
    key = f"faultflow/{NS}/{uid}/write/result.txt"
    assert lab.repo.s3.list_keys(lab.repo.bucket, f"faultflow/{NS}/{uid}/") == [key]
    stored = lab.repo.s3.get_object(lab.repo.bucket, key).decode()
    assert stored.startswith("written on ")
    assert read["outputs"]["parameters"][0]["value"].strip() == stored.strip()
    # Real pods on the lab's nodes, run by the emissary executor.
    rest = lab.cluster.rest()
    pods = rest.get(f"/api/v1/namespaces/{NS}/pods?labelSelector=workflows.argoproj.io%2Fworkflow%3D{done['metadata']['name']}")["items"]
    assert len(pods) == 2
    for pod in pods:
        assert pod["spec"]["nodeName"] in lab.cluster.nodes
        main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
        assert main["command"][:2] == ["/var/run/argo/argoexec", "emissary"]
        assert {c["name"] for c in pod["spec"]["initContainers"]} == {"init"}
        assert all(c["image"] == manifests.images_of(lab.argo.line).executor for c in pod["spec"]["initContainers"])


def test_exit_3_is_retried_with_backoff_and_exit_1_is_not(lab):
    workflow = _workflow(
        "retry",
        [
            {
                "name": "main",
                "dag": {
                    "tasks": [
                        {"name": "transient", "template": "exit", "arguments": {"parameters": [{"name": "code", "value": "3"}]}},
                        {"name": "broken", "template": "exit", "arguments": {"parameters": [{"name": "code", "value": "1"}]}},
                    ]
                },
            },
            {
                "name": "exit",
                "inputs": {"parameters": [{"name": "code"}]},
                "retryStrategy": RETRY,
                "container": _container("exit {{inputs.parameters.code}}"),
            },
        ],
    )
    done = lab.run(workflow)
    assert done["status"]["phase"] == "Failed", _summary(done)
    attempts = {}
    for task in ("transient", "broken"):
        retry = _node(done, task, "Retry")
        children = sorted((done["status"]["nodes"][c] for c in retry.get("children", [])), key=lambda n: n["startedAt"])
        attempts[task] = children
        assert retry["phase"] == "Failed"
        assert all(c["phase"] == "Failed" for c in children)
    assert len(attempts["transient"]) == 1 + RETRY["limit"]
    assert len(attempts["broken"]) == 1
    assert {c["outputs"]["exitCode"] for c in attempts["transient"]} == {"3"}
    assert attempts["broken"][0]["outputs"]["exitCode"] == "1"
    # Backoff: attempt n+1 starts no sooner than 2s * 2^n after attempt n finished (timestamps have
    # whole seconds, hence the second of slack).
    for n, (before, after) in enumerate(zip(attempts["transient"], attempts["transient"][1:], strict=False)):
        gap = (_time(after["startedAt"]) - _time(before["finishedAt"])).total_seconds()
        assert gap >= BACKOFF_S * 2**n - 1, f"attempt {n + 1} started {gap}s after attempt {n} finished"


def test_argo_stop_runs_the_exit_handler(lab):
    workflow = _workflow(
        "stop",
        [
            {"name": "main", "steps": [[{"name": "hold", "template": "hold"}]]},
            {"name": "hold", "container": {**_container(""), "command": ["sleep", "600"]}},
            {
                "name": "revert",
                "container": _container(
                    "mkdir -p /tmp/faultflow/outputs && echo '{{workflow.status}}' > /tmp/faultflow/outputs/reverted.txt"
                ),
                "outputs": {"artifacts": [_outputs_artifact("exit-handler")]},
            },
        ],
        onExit="revert",
    )
    name = lab.submit(workflow)

    def holding() -> bool | None:
        current = argo_cli.get(lab.cluster.kubeconfig, lab.argo.line, NS, name)
        nodes = [n for n in _nodes(current) if n["displayName"] == "hold" and n["type"] == "Pod"]
        return True if nodes and nodes[0]["phase"] == "Running" else None

    wait_until(holding, what=f"{name}'s hold step running", timeout_s=180, interval_s=0.5)
    lab.argo_cmd("stop", "-n", NS, name)
    done = argo_cli.wait(lab.cluster.kubeconfig, lab.argo.line, NS, name)
    assert done["status"]["phase"] == "Failed", _summary(done)
    assert _node(done, "hold", "Pod")["phase"] in ("Failed", "Error")
    handler = _node(done, f"{name}.onExit")
    assert handler["phase"] == "Succeeded", _summary(done)
    # The handler ran after the stop and stored its evidence where the report will look for it.
    key = f"faultflow/{NS}/{done['metadata']['uid']}/exit-handler/reverted.txt"
    assert lab.repo.s3.get_object(lab.repo.bucket, key).decode().strip() in ("Failed", "Error")


# ---- issue 15 item 9: the rendered node stage under the real controller --------------------------------
GPU_NODE = "gpu-0"
XID = 43  # one the lab's device plugin ignores (NVIDIA's ignore list)


def _inject_xid_workflow() -> dict:
    """gpu-fault's inject-xid template exactly as rendered, run twice by a DAG whose tasks give it the
    inputs gpu-fault's DAG would (the node; preflight's `expect`: none, then cordon, so the real
    controller evaluates both branches of its podSpecPatch), the workflow parameters at their
    defaults (XID: `XID`), and the executor's account as the rendered templates set it (here the
    namespace's `default`, which has Argo's executor RBAC).

    Two changes, neither in what is under test: the image is the lab's copy of it
    (`localhost/<name>:<tag>`), and the GPU driver SIMULATOR's tree (on a real node the driver's
    /proc/driver/nvidia is global; here it is the node's own /proc/driver, which a container's fresh
    /proc does not show) is mounted and --proc-root points there."""
    spec = scenario_template(by_name("gpu-fault")).to_dict()["spec"]
    template = next(t for t in spec["templates"] if t["name"] == "inject-xid")
    agent = product.node_agent_image()
    container = template["container"]
    assert container["image"] == f"{agent.name}:{agent.tag}"
    assert container["securityContext"] == {"privileged": True, "runAsUser": 0, "readOnlyRootFilesystem": True}
    container["image"], container["imagePullPolicy"] = agent.ref, "Never"
    container["args"][container["args"].index("--proc-root") + 1] = "/host/proc"
    container["volumeMounts"].append({"name": "driver", "mountPath": "/host/proc/driver", "readOnly": True})
    template["volumes"].append({"name": "driver", "hostPath": {"path": "/proc/driver", "type": "Directory"}})
    parameters = [{**p, "value": str(XID)} if p["name"] == "xid" else p for p in spec["arguments"]["parameters"]]

    def task(name: str, expect: str, depends: str | None = None) -> dict:
        arguments = [{"name": "inject-cuda-shim-node", "value": GPU_NODE}, {"name": "preflight-expect", "value": expect}]
        return {"name": name, "template": "inject-xid", "arguments": {"parameters": arguments}, **({"depends": depends} if depends else {})}

    main = {"name": "main", "dag": {"tasks": [task("unwatched", "none"), task("watched", "cordon", "unwatched")]}}
    workflow = _workflow("inject-xid", [main, template], arguments={"parameters": parameters})
    workflow["spec"]["executor"] = {"serviceAccountName": "default"}
    return workflow


def test_the_rendered_inject_xid_step_returns_its_outputs_from_tmp_under_a_read_only_root(lab):
    """Argo's emissary runs the node stage in the node-agent image under readOnlyRootFilesystem: the
    output parameters are read from files under /tmp (the template's emptyDir) and come back in the
    Workflow's status, the XID lines reach gpu-0's kernel log, and NVSentinel's metadata directory is
    mounted only where preflight's `expect` is not none (the podSpecPatch, evaluated by the real
    controller). The toggle-off pod then switches the node's toggle off."""
    rest = lab.cluster.rest()
    node_root = Path(f"/proc/{lab.cluster.nodes[GPU_NODE].ns.pid}/root")
    for path in ("/var/lib/nvsentinel", TOGGLE_DIR_PATH):  # NVSentinel's collector and the shim's init container make these
        (node_root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    toggle_file = node_root / toggle.file_in(TOGGLE_DIR_PATH).lstrip("/")
    # As the shim image's install.sh leaves it: off, the toggle owner's (the lab's GPU node made it as root).
    if not toggle_file.exists():
        toggle.write(toggle_file, toggle.Toggle(on=False))
    os.chown(toggle_file, TOGGLE_UID, TOGGLE_UID)
    # The node agent's account, and the executor's token Secret Argo mounts where a pod has no token of
    # its own (deploy/ ships one for faultflow-executor: workflows.deploy.token_secret).
    rest.post(
        f"/api/v1/namespaces/{NS}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "faultflow-node-agent"}},
    )
    rest.post(f"/api/v1/namespaces/{NS}/secrets", token_secret("default", NS))
    kmsg_log = lab.cluster.nodes[GPU_NODE].kmsg_log
    before = kmsg_log.read_bytes() if kmsg_log.exists() else b""
    done = lab.run(_inject_xid_workflow())
    assert done["status"]["phase"] == "Succeeded", _summary(done)
    lines = []
    for name in ("unwatched", "watched"):
        outputs = {p["name"]: p.get("value") for p in _node(done, name)["outputs"]["parameters"]}
        assert set(outputs) == {"fault-time-ms", "pci", "expected-action", "expected-why"}, outputs
        assert outputs["fault-time-ms"].isdigit() and outputs["pci"].count(":") == 2 and outputs["expected-action"], outputs
        lines.append(f"Xid (PCI:{outputs['pci']}): {XID},")
    written = kmsg_log.read_bytes()[len(before) :].decode(errors="replace")
    assert all(written.count(line) >= 1 for line in lines) and written.count(f"): {XID},") >= 2, written[-2000:]
    assert toggle.read(toggle_file).on
    pods = rest.get(f"/api/v1/namespaces/{NS}/pods?labelSelector=workflows.argoproj.io%2Fworkflow%3D{done['metadata']['name']}")["items"]
    by_task = {p["metadata"]["annotations"]["workflows.argoproj.io/node-name"].rpartition(".")[2]: p for p in pods}
    assert set(by_task) == {"unwatched", "watched"}
    for name, pod in by_task.items():
        main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
        assert main["command"][:2] == ["/var/run/argo/argoexec", "emissary"]
        assert main["securityContext"]["readOnlyRootFilesystem"] is True and main["image"] == product.node_agent_image().ref
        assert pod["spec"]["nodeName"] == GPU_NODE and not pod["spec"].get("hostPID")
        host_paths = {v["hostPath"]["path"] for v in pod["spec"]["volumes"] if "hostPath" in v}
        assert ("/var/lib/nvsentinel" in host_paths) == (name == "watched"), (name, host_paths)
    off = toggle_off_pod("argo-item9", NS, GPU_NODE, TOGGLE_DIR_PATH, product.node_agent_image().ref)
    run_to_completion(connect(str(lab.cluster.kubeconfig)), off, timeout_s=120)
    assert toggle.read(toggle_file).on is False
