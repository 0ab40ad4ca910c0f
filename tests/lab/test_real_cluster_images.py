"""What only a real node shows about faultflow's own pods (issue 14): the product's images built here
(lab.images.product), run by real kubelets on a real cluster (lab.nodes), gpu-0 + cpu-0.

gpu-0's `kubernetes.io/hostname` label differs from its name, as on clouds. Each test fails on the
code before issue 14's fixes:
* the steps image runs non-root with its entry point (it was never built);
* the shimmed worker (faultflow's init container, steps.workload.shim_patch) starts under a pod-level
  runAsNonRoot/runAsUser (the init container had no securityContext: refused as root), and the shim's
  marker comes back through the pod log API of the real kubelet, read by the step's own code;
* the toggle-off pod (steps.gpu.toggle_pod) switches the toggle off as the node-agent image's user (the
  toggle was root's, 0644);
* the XID pod, as the WorkflowTemplate renders it, schedules onto gpu-0 (it was pinned by the
  hostname label, and stayed Pending).
Issue 15 item 9: the node pods run the node-agent image (images/node-agent), which has no Kubernetes
client; the rendered inject-xid pod runs it under its read-only root and writes the XID line into
gpu-0's kernel log, the toggle and its outputs (/tmp, an emptyDir), and the toggle-off pod switches
the toggle off again, the shimmed worker failing and recovering in between.
The lab's workload images (lab.images.worker) run there too: what the DGD on real nodes builds on.

Figures (`pod_start_s` of the steps and node-agent images, their sizes) are printed, not asserted:
speed goes to bench/.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from pathlib import Path

import pytest

from lab.images import build, product, worker
from lab.images.dockerfile import final_stage
from lab.nodes import cluster as real
from lab.processes import wait_until
from lab.rest import Rest
from steps.gpu import toggle
from steps.gpu.toggle_pod import TOGGLE_UID, run_to_completion, toggle_off_pod
from steps.gpu.xids import lookup
from steps.kube.client import connect
from steps.workload import shim_patch
from steps.workload.shim_inject import pods_missing_marker
from workflows.render import scenario_template
from workflows.scenarios import by_name
from workflows.stages.common import TOGGLE_DIR_PATH

NS = "imagetest"
POD_TIMEOUT_S = 120
GPU_NODE = "gpu-0"
GPU_NODE_HOSTNAME = "ip-10-250-0-10.lab.internal"  # what a cloud's kubelet labels the node with
# A kubelet gives up on these: waiting longer shows nothing more.
STUCK = {"CreateContainerConfigError", "ErrImageNeverPull", "InvalidImageName", "CreateContainerError", "RunContainerError"}

# The fault the toggle tests switch on: one the node's device plugin ignores (NVIDIA's ignore list), so
# the GPUs stay allocatable for the later tests of this module's one cluster; 79 would mark them all
# Unhealthy for good, as NVIDIA's plugin does.
XID = 43


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real-images") / "lab"
    plans = real.plan_nodes(gpu_nodes=1, cpu_nodes=1, hostnames={GPU_NODE: GPU_NODE_HOSTNAME})
    lab = real.RealCluster(
        folder,
        plans,
        coredns=False,
        extra_images=(
            product.ensure_steps,
            product.ensure_shim,
            product.ensure_node_agent,
            worker.ensure_cuda_worker,
            worker.ensure_lab_worker,
            worker.ensure_frontend,
        ),
    ).start()
    print(f"\nfigures: {real.figures_line(lab.figures)}")
    rest = lab.rest()
    rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    # Pod admission needs the namespace's default ServiceAccount, which kube-controller-manager makes.
    wait_until(lambda: rest.get_or_none(f"/api/v1/namespaces/{NS}/serviceaccounts/default"), what="default ServiceAccount", timeout_s=60)
    try:
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(folder, ignore_errors=True)  # each node's image store is hundreds of MB


def _logs(rest: Rest, name: str, container: str = "") -> str:
    import urllib.request

    query = f"?container={container}" if container else ""
    request = rest._request("GET", f"/api/v1/namespaces/{NS}/pods/{name}/log{query}")
    with urllib.request.urlopen(request, context=rest.context, timeout=30) as reply:
        return reply.read().decode()


def _stuck(pod: dict) -> str | None:
    """Why the kubelet will not start the pod's containers (or the scheduler not place it), if so."""
    status = pod.get("status", {})
    for c in status.get("initContainerStatuses", []) + status.get("containerStatuses", []):
        waiting = c.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in STUCK:
            return f"{c['name']}: {waiting['reason']}: {waiting.get('message', '')}"
    for condition in status.get("conditions", []):
        if condition["type"] == "PodScheduled" and condition["status"] == "False" and condition.get("reason") == "Unschedulable":
            return f"unschedulable: {condition.get('message', '')}"
    return None


def _wait_pod(rest: Rest, name: str, phases: tuple[str, ...]) -> dict:
    def reached():
        pod = rest.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        if why := _stuck(pod):
            raise AssertionError(f"pod {name}: {why}")
        phase = pod.get("status", {}).get("phase")
        if phase == "Failed" and "Failed" not in phases:
            status = pod["status"]
            why = f"{status.get('reason', '')}: {status.get('message', '')}"  # set when the kubelet refused it
            raise AssertionError(f"pod {name} failed ({why}): {json.dumps(status.get('containerStatuses'))[:800]}")
        return pod if phase in phases else None

    return wait_until(reached, what=f"pod {name} {'/'.join(phases)}", timeout_s=POD_TIMEOUT_S, interval_s=0.1)


def _node_file(lab: real.RealCluster, node: str, path: str) -> Path:
    """A file in the node's own root (its /var/lib overlay), as the host reaches it."""
    return Path(f"/proc/{lab.nodes[node].ns.pid}/root{path}")


# ---- the steps image ---------------------------------------------------------------------------
def test_the_steps_image_runs_non_root_with_its_entry_point(cluster):
    """Under a pod-level runAsNonRoot the kubelet checks the image's own user (a numeric non-zero
    USER, or it refuses); the entry point alone (`--help`) exits 0, and a step's bad input exits 2."""
    rest = cluster.rest()
    steps = product.steps_image().ref
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "steps-image", "namespace": NS},
        "spec": {
            "nodeName": "cpu-0",
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True},
            "containers": [
                {"name": "help", "image": steps, "imagePullPolicy": "Never", "args": ["--help"]},
                {"name": "whoami", "image": steps, "imagePullPolicy": "Never",
                 "command": ["python3", "-c", "import os; print(os.getuid(), os.getgid())"]},
                {"name": "bad-input", "image": steps, "imagePullPolicy": "Never", "args": ["shim", "on", "--xid", "nope"]},
            ],
        },
    }  # fmt: skip
    created = time.monotonic()
    rest.post(f"/api/v1/namespaces/{NS}/pods", body)
    wait_until(
        lambda: (
            True
            if rest.get_or_none(f"/api/v1/namespaces/{NS}/pods/steps-image")["status"].get("phase") in ("Running", "Succeeded", "Failed")
            else None
        ),
        what="steps-image started",
        timeout_s=POD_TIMEOUT_S,
        interval_s=0.1,
    )
    print(f"pod_start_s (steps image): {time.monotonic() - created:.2f}")
    pod = _wait_pod(rest, "steps-image", ("Succeeded", "Failed"))
    exits = {c["name"]: c["state"]["terminated"]["exitCode"] for c in pod["status"]["containerStatuses"]}
    assert exits == {"help": 0, "whoami": 0, "bad-input": 2}, exits
    assert "Usage: faultflow" in _logs(rest, "steps-image", "help")
    stage = final_stage(product.STEPS_DOCKERFILE)
    assert _logs(rest, "steps-image", "whoami").split() == [stage.user, stage.user] == [str(TOGGLE_UID)] * 2


# ---- the shimmed worker and its toggle ------------------------------------------------------------
def _worker_deployment(name: str) -> dict:
    """A GPU worker whose owner demands non-root pods (PSA `restricted`'s pod-level settings)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000},
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "image": worker.CUDA_WORKER.ref,
                            "imagePullPolicy": "Never",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def shimmed_worker(cluster):
    """The worker Deployment with faultflow's shim patched in by the step's own code, Ready on gpu-0."""
    rest = cluster.rest()
    cfg = shim_patch.ShimConfig(image=product.shim_image().ref, xid=79, toggle_dir=TOGGLE_DIR_PATH, container="main")
    deployment, _ = shim_patch.apply_shim(_worker_deployment("worker"), cfg)
    rest.post(f"/apis/apps/v1/namespaces/{NS}/deployments", deployment)

    def ready_pod():
        pods = rest.get(f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dworker")["items"]
        for pod in pods:
            if why := _stuck(pod):
                raise AssertionError(f"worker pod {pod['metadata']['name']}: {why}")
            if any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", [])):
                return pod
        return None

    pod = wait_until(ready_pod, what="the shimmed worker Ready", timeout_s=POD_TIMEOUT_S, interval_s=0.2)
    return deployment, cfg, pod


def test_the_shimmed_worker_starts_under_a_pod_level_run_as_non_root(cluster, shimmed_worker):
    deployment, cfg, pod = shimmed_worker
    assert pod["spec"]["nodeName"] == GPU_NODE
    # The toggle the init container made: off, the steps image's user's, readable by the worker (uid 1000).
    made = _node_file(cluster, GPU_NODE, cfg.toggle_file)
    assert toggle.read(made).on is False
    stat = made.stat()
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (TOGGLE_UID, TOGGLE_UID, 0o644)


def test_the_shim_marker_comes_back_through_the_real_kubelets_log_api(cluster, shimmed_worker):
    """inject-cuda-shim's own check (pods_missing_marker): the pod log API, through the API server to
    gpu-0's kubelet, to containerd's log of the process started with the shim preloaded."""
    deployment, cfg, _ = shimmed_worker
    kube = connect(str(cluster.kubeconfig))

    def marker_everywhere():
        missing, total = pods_missing_marker(kube, NS, deployment, cfg.toggle_file, "main", GPU_NODE)
        return (missing, total) if total and not missing else None

    assert wait_until(marker_everywhere, what="the shim's marker in the worker's log", timeout_s=30) == ([], 1)


def _worker_log(rest: Rest, pod: dict) -> str:
    return _logs(rest, pod["metadata"]["name"], "main")


def test_the_toggle_off_pod_switches_the_toggle_off_as_the_images_user(cluster, shimmed_worker):
    """The fault switched on as inject-xid does (root, privileged, on the node), seen by the worker;
    then steps.gpu.toggle_pod's pod, exactly as cleanup and the janitor create it, switches it off."""
    deployment, cfg, pod = shimmed_worker
    rest = cluster.rest()
    agent = product.node_agent_image().ref  # the node pods' image (issue 15 item 9)
    on = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "toggle-on", "namespace": NS},
        "spec": {
            "nodeName": GPU_NODE,
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": agent,
                    "imagePullPolicy": "Never",
                    "args": ["shim", "on", "--file", cfg.toggle_file, "--xid", str(XID)],
                    "securityContext": {"privileged": True, "runAsUser": 0},
                    "volumeMounts": [{"name": "toggle", "mountPath": TOGGLE_DIR_PATH}],
                }
            ],
            "volumes": [{"name": "toggle", "hostPath": {"path": TOGGLE_DIR_PATH, "type": "Directory"}}],
        },
    }
    rest.post(f"/api/v1/namespaces/{NS}/pods", on)
    _wait_pod(rest, "toggle-on", ("Succeeded",))
    assert toggle.read(_node_file(cluster, GPU_NODE, cfg.toggle_file)).on is True
    wait_until(
        lambda: True if f"cuda-worker: sync={lookup(XID).effect.call_error}" in _worker_log(rest, pod) else None,
        what="the worker failing",
        timeout_s=30,
    )

    kube = connect(str(cluster.kubeconfig))
    off = toggle_off_pod(f"test-{secrets.token_hex(3)}", NS, GPU_NODE, TOGGLE_DIR_PATH, agent)
    run_to_completion(kube, off, timeout_s=POD_TIMEOUT_S)  # raises when the pod fails
    assert toggle.read(_node_file(cluster, GPU_NODE, cfg.toggle_file)).on is False
    wait_until(
        lambda: True if _worker_log(rest, pod).rstrip().endswith("cuda-worker: sync=0") else None,
        what="the worker recovered",
        timeout_s=30,
    )


# ---- the node-agent image and the rendered XID pod -----------------------------------------------------
# Inside the container: the mean wall time of the image's `faultflow --help` (the entry point's start).
TIME_HELP = (
    "import subprocess, time\n"
    "start = time.monotonic()\n"
    "for _ in range(5):\n"
    "    subprocess.run(['faultflow', '--help'], check=True, capture_output=True)\n"
    "print(f'{(time.monotonic() - start) / 5:.3f}')\n"
)


def _help_start_s(rest: Rest, name: str, image: str) -> tuple[float, float]:
    """Seconds from creating a one-container pod on cpu-0 until it has run, and the mean seconds of
    `faultflow --help` inside it (figures: the images are already on the node, so no pull)."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": "cpu-0",
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [{"name": "help", "image": image, "imagePullPolicy": "Never", "command": ["python3", "-c", TIME_HELP]}],
        },
    }
    created = time.monotonic()
    rest.post(f"/api/v1/namespaces/{NS}/pods", body)
    _wait_pod(rest, name, ("Succeeded",))
    return time.monotonic() - created, float(_logs(rest, name))


def test_the_node_agent_image_has_no_kubernetes_client(cluster):
    """Issue 15 item 9: the node pods' image runs its entry point as its own non-root user, and neither
    the Kubernetes client nor the steps image's other heavy packages are in it."""
    rest = cluster.rest()
    agent = product.node_agent_image().ref
    probe = (
        "import importlib.util as u; print(' '.join(m for m in ('kubernetes', 'httpx', 'matplotlib', 'numpy', 'yaml') if u.find_spec(m)))"
    )
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "node-agent-image", "namespace": NS},
        "spec": {
            "nodeName": "cpu-0",
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True},
            "containers": [
                {"name": "help", "image": agent, "imagePullPolicy": "Never", "args": ["--help"]},
                {"name": "whoami", "image": agent, "imagePullPolicy": "Never",
                 "command": ["python3", "-c", "import os; print(os.getuid(), os.getgid())"]},
                {"name": "import-kubernetes", "image": agent, "imagePullPolicy": "Never", "command": ["python3", "-c", "import kubernetes"]},
                {"name": "heavy", "image": agent, "imagePullPolicy": "Never", "command": ["python3", "-c", probe]},
            ],
        },
    }  # fmt: skip
    created = time.monotonic()
    rest.post(f"/api/v1/namespaces/{NS}/pods", body)
    _wait_pod(rest, "node-agent-image", ("Running", "Succeeded", "Failed"))
    print(f"pod_start_s (node-agent image): {time.monotonic() - created:.2f}")
    pod = _wait_pod(rest, "node-agent-image", ("Succeeded", "Failed"))
    exits = {c["name"]: c["state"]["terminated"]["exitCode"] for c in pod["status"]["containerStatuses"]}
    assert exits == {"help": 0, "whoami": 0, "import-kubernetes": 1, "heavy": 0}, exits
    assert "ModuleNotFoundError: No module named 'kubernetes'" in _logs(rest, "node-agent-image", "import-kubernetes")
    assert _logs(rest, "node-agent-image", "heavy").strip() == ""
    commands = _logs(rest, "node-agent-image", "help").split("Commands:")[1].strip().splitlines()
    assert [c.split()[0] for c in commands] == ["shim", "step"]  # the node-side commands alone
    assert _logs(rest, "node-agent-image", "whoami").split() == [str(TOGGLE_UID)] * 2
    starts = {image: _help_start_s(rest, f"help-{image.name}", image.ref) for image in (product.node_agent_image(), product.steps_image())}
    print("pod_run_s (one container, 5x `faultflow --help`, to Succeeded): " + ", ".join(f"{i.name} {t[0]:.2f}" for i, t in starts.items()))
    print("entry_point_s (`faultflow --help` in the container, mean of 5): " + ", ".join(f"{i.name} {t[1]:.3f}" for i, t in starts.items()))
    for image in (product.node_agent_image(), product.steps_image()):
        compressed, uncompressed = build.sizes(image)
        print(f"image_size_mb ({image.name}): uncompressed {uncompressed / 1e6:.1f}, compressed layers {compressed / 1e6:.1f}")


def _rendered_inject_xid(node: str, xid: int) -> tuple[dict, dict]:
    """gpu-fault's inject-xid template with what Argo substitutes: the workflow parameters' defaults
    (the XID: `xid`), the node inject-cuda-shim output, a run name. NVSentinel is not expected here
    (preflight's `expect` none), so its metadata mount (the podSpecPatch) is not added."""
    spec = scenario_template(by_name("gpu-fault")).to_dict()["spec"]
    values = {f"workflow.parameters.{p['name']}": p["value"] for p in spec["arguments"]["parameters"]}
    values |= {"workflow.parameters.xid": str(xid), "inputs.parameters.inject-cuda-shim-node": node, "workflow.name": "agent-test"}
    text = json.dumps(next(t for t in spec["templates"] if t["name"] == "inject-xid"))
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    template = json.loads(text)
    assert "{{" not in json.dumps({k: template.get(k) for k in ("affinity", "tolerations", "volumes", "container")})
    return template, template["container"]


def test_the_rendered_inject_xid_pod_runs_the_node_agent_image_on_a_read_only_root(cluster, shimmed_worker):
    """The inject-xid pod as gpu-fault's WorkflowTemplate renders it (placement by node name on a node
    whose hostname label differs, tolerations, host paths, privilege, read-only root with /tmp an
    emptyDir, the node-agent image, its command and arguments): the XID line reaches gpu-0's kernel log
    (its /dev/kmsg pty), the toggle goes on for the XID's GPU and the shimmed worker fails; it exits 0,
    so its output files were written under /tmp. Then the toggle-off pod, as cleanup and the janitor make it, in the same
    image as its own user, switches the toggle off and the worker recovers.

    The one change: on a real node the driver's /proc/driver/nvidia is global (every container's /proc
    shows it); the lab's GPU driver SIMULATOR keeps its tree in the node's own /proc/driver, which a
    container's fresh /proc does not show, so it is mounted and --proc-root points there."""
    deployment, cfg, worker_pod = shimmed_worker
    rest = cluster.rest()
    node = rest.get(f"/api/v1/nodes/{GPU_NODE}")
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == GPU_NODE_HOSTNAME != GPU_NODE
    template, container = _rendered_inject_xid(GPU_NODE, XID)
    agent = product.node_agent_image()
    assert container["image"] == f"{agent.name}:{agent.tag}"  # the lab's copy of it is localhost/<name>:<tag>
    assert container["securityContext"] == {"privileged": True, "runAsUser": 0, "readOnlyRootFilesystem": True}
    args = list(container["args"])
    args[args.index("--proc-root") + 1] = "/host/proc"  # the driver SIMULATOR's tree (see the docstring)
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "inject-xid", "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": template["automountServiceAccountToken"],
            "affinity": template["affinity"],
            "tolerations": template["tolerations"],
            "volumes": [*template["volumes"], {"name": "driver", "hostPath": {"path": "/proc/driver", "type": "Directory"}}],
            "containers": [
                {
                    "name": "main",
                    "image": agent.ref,
                    "imagePullPolicy": "Never",
                    "command": container["command"],
                    "args": args,
                    "env": container["env"],
                    "resources": container["resources"],
                    "securityContext": container["securityContext"],
                    "volumeMounts": [*container["volumeMounts"], {"name": "driver", "mountPath": "/host/proc/driver", "readOnly": True}],
                }
            ],
        },
    }
    assert {v["name"]: v for v in body["spec"]["volumes"]}["tmp"] == {"name": "tmp", "emptyDir": {}}
    kmsg_log = cluster.nodes[GPU_NODE].kmsg_log
    before = kmsg_log.read_bytes() if kmsg_log.exists() else b""
    created = time.monotonic()
    rest.post(f"/api/v1/namespaces/{NS}/pods", body)
    pod = _wait_pod(rest, "inject-xid", ("Succeeded",))
    print(f"pod_run_s (rendered inject-xid, node-agent image): {time.monotonic() - created:.2f}")
    assert pod["spec"]["nodeName"] == GPU_NODE
    events = [json.loads(line) for line in _logs(rest, "inject-xid").splitlines() if line.startswith("{")]
    injected = {e["kind"]: e for e in events if e["event"] == "fault_injected"}
    assert set(injected) == {"cuda", "xid"}, events
    line = injected["xid"]["line"]
    assert f"Xid (PCI:{injected['xid']['pci']}): {XID}," in line
    # The node's kernel log: what gpu-0's /dev/kmsg (a pty the node's holder copies) received.
    wait_until(
        lambda: True if line.encode() in kmsg_log.read_bytes()[len(before) :] else None, what="the XID line in gpu-0's kmsg", timeout_s=30
    )
    state = toggle.read(_node_file(cluster, GPU_NODE, cfg.toggle_file))
    assert state.on and state.xid == XID and state.bus == injected["cuda"]["bus"]
    # Its output files (Argo's valueFrom.path, under /tmp) were written, or it would have exited 3: the
    # kubelet removes a finished pod's emptyDir, so they are read back through Argo in test_real_argo.py.
    wait_until(
        lambda: True if f"cuda-worker: sync={lookup(XID).effect.call_error}" in _worker_log(rest, worker_pod) else None,
        what="the worker failing",
        timeout_s=30,
    )

    kube = connect(str(cluster.kubeconfig))
    off = toggle_off_pod(f"test-{secrets.token_hex(3)}", NS, GPU_NODE, TOGGLE_DIR_PATH, agent.ref)
    assert off["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    run_to_completion(kube, off, timeout_s=POD_TIMEOUT_S)
    assert toggle.read(_node_file(cluster, GPU_NODE, cfg.toggle_file)).on is False
    wait_until(
        lambda: True if _worker_log(rest, worker_pod).rstrip().endswith("cuda-worker: sync=0") else None,
        what="the worker recovered",
        timeout_s=30,
    )


# ---- the lab's workload images ------------------------------------------------------------------------
def test_the_lab_worker_and_the_frontend_simulator_images_run_on_real_nodes(cluster):
    """The frontend simulator answers the OpenAI API on its pod's address, from a pod on the other
    node; the engine-loop worker holds its CUDA context on gpu-0's simulated driver."""
    rest = cluster.rest()

    def pod(name: str, node: str, image: str, **container) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never", **container}],
            },
        }

    rest.post(f"/api/v1/namespaces/{NS}/pods", pod("frontend", GPU_NODE, worker.frontend_image().ref))
    rest.post(
        f"/api/v1/namespaces/{NS}/pods",
        pod("lab-worker", GPU_NODE, worker.LAB_WORKER.ref, args=["--port", "8123", "--name", "lab-worker"],
            resources={"limits": {"nvidia.com/gpu": "1"}}),
    )  # fmt: skip
    address = _wait_pod(rest, "frontend", ("Running",))["status"]["podIP"]
    script = (
        "import sys, time, urllib.request\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        print(urllib.request.urlopen('http://{address}:{worker.FRONTEND_PORT}/v1/models', timeout=2).read().decode())\n"
        "        sys.exit(0)\n"
        "    except OSError as exc:\n"
        "        print(exc)\n"
        "        time.sleep(0.1)\n"
        "sys.exit(1)\n"
    )
    rest.post(f"/api/v1/namespaces/{NS}/pods", pod("client", "cpu-0", product.steps_image().ref, command=["python3", "-c", script]))
    _wait_pod(rest, "client", ("Succeeded",))
    assert '"object": "list"' in _logs(rest, "client") or '"object":"list"' in _logs(rest, "client")
    _wait_pod(rest, "lab-worker", ("Running",))
    wait_until(lambda: True if "serving on" in _logs(rest, "lab-worker") else None, what="the lab worker serving", timeout_s=30)
