"""The GPU world's SIMULATORS on the real lab cluster (issue 14): `lab.simulators.world.start` on a real
cluster of gpu-0, gpu-1 and cpu-0 (`lab.nodes`), then the fault flow the scenarios rely on, with only
the GPU, NVSentinel and Dynamo's operator simulated:

* the DGD (opted-in namespace) becomes Deployments, made by the operator SIMULATOR running as a
  Deployment itself (its own image, in-cluster credentials); its workers run from the lab-worker image
  on the GPU nodes, one each, with the GPU the node's device plugin allocated, Ready through their
  readinessProbe; the headless Service's EndpointSlice lists them ready;
* inference through the frontend Service by its DNS name (CoreDNS + kube-proxy) from a pod succeeds,
  answered by a worker;
* an XID 79 line written to gpu-0's /dev/kmsg by a pod (hostPath CharDevice) makes the NVSentinel
  SIMULATOR's pod on gpu-0 (a DaemonSet reading the node's kernel log) quarantine and drain gpu-0: its worker is evicted through the Eviction API (the pod's
  DisruptionTarget condition says so), the ReplicaSet's replacement runs on gpu-1; the frontend serves
  again;
* inject-cuda-shim's patch of the DGD rolls the workers through the real deployment controller: the
  new pods run the shim image's init container and log the shim's marker (read through the kubelet).

The tests run in order on one cluster. Figures (world_up_s, detection_s, drain_s, recovery_s) are
printed, never asserted: speed goes to bench/.
"""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from lab.gpu_nodes import bus_id
from lab.images import build as images
from lab.images import product
from lab.informer import start_informer
from lab.nodes import cluster as real
from lab.nvsentinel_simulator import NvsentinelConfig
from lab.processes import wait_until
from lab.simulators import operator_install
from lab.simulators import world as lab_world
from lab.simulators.workload import WORKER
from steps.gpu import nvsentinel as nv
from steps.gpu.guardrails import check_nvsentinel
from steps.gpu.kmsg import xid_line
from steps.kube import objects as o
from steps.kube.client import Kube, Ref, connect
from steps.workload import shim_patch
from steps.workload.dynamo import COMPONENT_LABEL, DGD_NAME_LABEL
from steps.workload.rollout import rolled_out
from steps.workload.shim_inject import pods_missing_marker
from workflows.stages.common import TOGGLE_DIR_PATH

OPTIONS = lab_world.WorldOptions(
    workers=2,
    # No artificial delays: the figures are the real cluster's and the simulator's own.
    nvsentinel=NvsentinelConfig(detect_delay_s=0, quarantine_delay_s=0, drain_delay_s=0),
)
NS = OPTIONS.namespace
POD_TIMEOUT_S = 180
WORKER_SELECTOR = f"{DGD_NAME_LABEL}={OPTIONS.dgd_name},{COMPONENT_LABEL}={WORKER}"
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real-world") / "lab"
    plans = real.plan_nodes(gpu_nodes=2, cpu_nodes=1, gpus_per_node=4)
    cluster = real.RealCluster(folder, plans, extra_images=(*lab_world.IMAGES, product.ensure_shim)).start()
    print(f"\ncluster figures: {real.figures_line(cluster.figures)}")
    handle = None
    try:
        handle = lab_world.start(cluster, OPTIONS)
        print(f"world figures: {real.figures_line(handle.figures)}")
        yield handle
    finally:
        print(f"\nfigures: {json.dumps({k: round(v, 2) for k, v in FIGURES.items()})}")
        if handle is not None:
            handle.stop()
        for namespace in (operator_install.NAMESPACE, OPTIONS.nvsentinel.namespace):
            print(f"simulators' logs in {namespace} (tail):\n{_logs_of(cluster, namespace)}")
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)  # each node's image store is hundreds of MB


def _logs_of(cluster: real.RealCluster, namespace: str) -> str:
    kube = connect(str(cluster.kubeconfig))
    try:
        pods = kube.list(Ref("v1", "pods", namespace, ""))["items"]
        return "\n".join(
            kube.request_text("GET", f"/api/v1/namespaces/{namespace}/pods/{p['metadata']['name']}/log?tailLines=20") for p in pods
        )
    except Exception as error:  # a log for the reader; its absence must not hide the test's own failure
        return f"(no log: {error})"


@pytest.fixture(scope="module")
def kube(world) -> Kube:
    return connect(str(world.cluster.kubeconfig))


def _workers(kube: Kube) -> list[dict]:
    pods = kube.list(Ref("v1", "pods", NS, ""), label_selector=WORKER_SELECTOR).get("items") or []
    return [p for p in pods if not o.terminating(p) and not o.finished(p)]


def _ready_workers(kube: Kube) -> list[dict]:
    return [p for p in _workers(kube) if o.pod_ready(p)]


def _run_pod(kube: Kube, body: dict) -> str:
    """Create a run-once pod, wait for it to succeed, return its log (a failure shows the log)."""
    name = body["metadata"]["name"]
    kube.create(Ref("v1", "pods", NS, ""), body)

    def finished():
        pod = kube.get(Ref("v1", "pods", NS, name))
        return pod if o.phase(pod) in ("Succeeded", "Failed") else None

    pod = wait_until(finished, what=f"pod {name} finished", timeout_s=POD_TIMEOUT_S, interval_s=0.2)
    log = kube.request_text("GET", f"/api/v1/namespaces/{NS}/pods/{name}/log")
    assert o.phase(pod) == "Succeeded", f"pod {name} failed:\n{log[-2000:]}"
    return log


def _client_pod(name: str, script: str, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": images.DEBIAN.ref, "imagePullPolicy": "Never", "command": ["python3", "-c", script]}],
            **spec,
        },
    }


def _inference(kube: Kube, world, name: str) -> tuple[dict, float]:
    """A completion through the frontend Service's DNS name, from a pod on cpu-0; the pod retries until
    the frontend answers 200 (that is the condition), and reports how long that took."""
    script = (
        "import json, sys, time, urllib.request\n"
        "started = time.monotonic()\n"
        f"url = {world.frontend_url + '/v1/completions'!r}\n"
        "body = json.dumps({'model': 'm', 'prompt': 'hello', 'max_tokens': 4}).encode()\n"
        "last = None\n"
        "while time.monotonic() - started < 150:\n"
        "    try:\n"
        "        request = urllib.request.Request(url, body, {'Content-Type': 'application/json'})\n"
        "        answer = json.loads(urllib.request.urlopen(request, timeout=10).read())\n"
        "        print(json.dumps({'answer': answer, 'waited_s': time.monotonic() - started}))\n"
        "        sys.exit(0)\n"
        "    except Exception as exc:\n"
        "        if str(exc) != last:\n"
        "            print('not yet:', exc, flush=True)\n"
        "            last = str(exc)\n"
        "        time.sleep(0.2)\n"
        "sys.exit(1)\n"
    )
    log = _run_pod(kube, _client_pod(name, script, nodeName="cpu-0"))
    result = json.loads(log.strip().splitlines()[-1])
    return result["answer"], result["waited_s"]


# ---- the world up ----------------------------------------------------------------------------------
def test_the_dgd_workers_run_ready_on_the_gpu_nodes(world, kube):
    FIGURES["world_up_s"] = world.figures["world_up_s"]
    workers = _ready_workers(kube)
    assert len(workers) == OPTIONS.workers
    assert sorted(p["spec"]["nodeName"] for p in workers) == ["gpu-0", "gpu-1"]  # spread: one per GPU node
    for pod in workers:
        labels = o.labels(pod)
        assert labels[DGD_NAME_LABEL] == OPTIONS.dgd_name and labels["nvidia.com/dynamo-component-type"] == "worker"
        main = pod["spec"]["containers"][0]
        assert main["image"].endswith("faultflow-lab-worker:0.1.0")
        assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert main["readinessProbe"]["httpGet"]["path"] == "/health"
        owner = pod["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "ReplicaSet"  # the real deployment controller made it, not the simulator
    deployment = kube.get(Ref("apps/v1", "deployments", NS, f"{OPTIONS.dgd_name}-vllmworker"))
    assert deployment["metadata"]["ownerReferences"][0]["kind"] == "DynamoGraphDeployment"
    (operator,) = kube.list(Ref("v1", "pods", operator_install.NAMESPACE, ""), label_selector="app.kubernetes.io/name=dynamo-operator")[
        "items"
    ]
    assert o.pod_ready(operator) and "faultflow-lab-operator" in operator["spec"]["containers"][0]["image"]
    assert operator["spec"]["serviceAccountName"] == operator_install.NAME
    slices = kube.list(
        Ref("discovery.k8s.io/v1", "endpointslices", NS, ""), label_selector=f"kubernetes.io/service-name={OPTIONS.dgd_name}-vllmworker"
    )["items"]
    ready = {a for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready") for a in e["addresses"]}
    assert ready == {p["status"]["podIP"] for p in workers}
    dgd = kube.get(lab_world.dgd_ref(OPTIONS))
    assert rolled_out(dgd, [WORKER]) and dgd["status"]["components"][WORKER]["readyReplicas"] == OPTIONS.workers
    for node in ("gpu-0", "gpu-1"):  # preflight's own check: NVSentinel's monitor runs on the node
        check_nvsentinel(kube, OPTIONS.nvsentinel.namespace, node, expect_remediation=True)


def test_inference_through_the_frontend_service_by_its_dns_name(world, kube):
    answer, waited = _inference(kube, world, "client-before")
    print(f"first_answer_s: {waited:.2f}")
    text = answer["choices"][0]["text"]
    assert f"(from {OPTIONS.dgd_name}-vllmworker-" in text, text  # a worker pod answered, through the frontend


# ---- XID 79 on gpu-0 -------------------------------------------------------------------------------
def _write_xid_pod(name: str, node: str, line: bytes) -> dict:
    # One write() on a fresh open() of /dev/kmsg, never through a shell (design: kernel log line).
    script = (
        "import os, time\n"
        "fd = os.open('/dev/kmsg', os.O_WRONLY)\n"
        f"os.write(fd, bytes.fromhex('{line.hex()}'))\n"
        "print(time.time())\n"  # when it was written (the pods share the machine's clock)
        "os.close(fd)\n"
    )
    body = _client_pod(name, script, nodeName=node, tolerations=[{"operator": "Exists"}])
    body["spec"]["containers"][0] |= {
        "securityContext": {"privileged": True},
        "volumeMounts": [{"name": "kmsg", "mountPath": "/dev/kmsg"}],
    }
    body["spec"]["volumes"] = [{"name": "kmsg", "hostPath": {"path": "/dev/kmsg", "type": "CharDevice"}}]
    return body


def test_xid_79_on_gpu_0_quarantines_and_drains_it_and_its_worker_moves_to_gpu_1(world, kube):
    (victim,) = [p for p in _ready_workers(kube) if p["spec"]["nodeName"] == "gpu-0"]
    seen: list[dict] = []  # every change of the victim, as a watch delivers it
    states: dict[str, float] = {}  # gpu-0's NVSentinel state -> when the watch first saw it
    stop = threading.Event()
    start_informer(
        "victim",
        kube,
        Ref("v1", "pods", NS, ""),
        lambda _kind, pod: seen.append(pod) if pod["metadata"]["name"] == victim["metadata"]["name"] else None,
        stop,
        label_selector=WORKER_SELECTOR,
    )
    start_informer(
        "gpu-0",
        kube,
        Ref("v1", "nodes", None, ""),
        lambda _kind, node: states.setdefault(o.labels(node).get(nv.STATE_LABEL, ""), time.time()),
        stop,
        field_selector="metadata.name=gpu-0",
    )
    try:
        line = xid_line(79, bus_id(0, 0)[4:].rsplit(".", 1)[0].lower(), 4242, "python3")
        written = float(_run_pod(kube, _write_xid_pod("xid-79", "gpu-0", line)).split()[-1])
        wait_until(lambda: True if "drain-succeeded" in states else None, what="gpu-0 quarantined and drained", timeout_s=120)
    finally:
        stop.set()
    quarantined = min(t for state, t in states.items() if state)  # the first NVSentinel state the watch saw
    FIGURES["detection_s"] = quarantined - written  # the line written -> gpu-0 seen quarantined
    FIGURES["drain_s"] = states["drain-succeeded"] - quarantined
    node = kube.get(Ref("v1", "nodes", None, "gpu-0"))
    assert nv.is_quarantined(node)
    assert node["spec"].get("unschedulable") is True
    condition = next(c for c in node["status"]["conditions"] if c["type"] == nv.XID_CONDITION)
    assert condition["status"] == "True" and "ErrorCode:79" in condition["message"]
    disruption = [c for pod in seen for c in pod["status"].get("conditions") or [] if c["type"] == "DisruptionTarget"]
    assert disruption and disruption[-1]["reason"] == "EvictionByEvictionAPI", disruption
    workers = wait_until(
        lambda: w if len(w := _ready_workers(kube)) == OPTIONS.workers else None,
        what="both workers Ready again",
        timeout_s=POD_TIMEOUT_S,
        interval_s=0.5,
    )
    FIGURES["workers_back_s"] = time.time() - written
    assert {p["spec"]["nodeName"] for p in workers} == {"gpu-1"}
    assert victim["metadata"]["name"] not in {p["metadata"]["name"] for p in workers}
    assert not nv.is_quarantined(kube.get(Ref("v1", "nodes", None, "gpu-1")))
    monitors = kube.list(
        Ref("v1", "pods", OPTIONS.nvsentinel.namespace, ""), label_selector=nv.SHM_POD_LABEL, field_selector="spec.nodeName=gpu-0"
    )["items"]
    assert [o.pod_ready(p) for p in monitors] == [True]  # the drain left NVSentinel's own pod on gpu-0


def test_the_frontend_serves_again_from_gpu_1(world, kube):
    answer, waited = _inference(kube, world, "client-after")
    FIGURES["recovery_s"] = waited
    names_on_gpu_1 = {p["metadata"]["name"] for p in _ready_workers(kube)}
    text = answer["choices"][0]["text"]
    assert any(f"(from {name})" in text for name in names_on_gpu_1), text


# ---- a DGD change rolls out: inject-cuda-shim's patch ---------------------------------------------
def test_the_shim_patch_of_the_dgd_rolls_the_workers_and_they_load_the_shim(world, kube):
    ref = lab_world.dgd_ref(OPTIONS)
    dgd = kube.get(ref)
    before = {p["metadata"]["name"] for p in _workers(kube)}
    cfg = shim_patch.ShimConfig(image=product.shim_image().ref, xid=79, toggle_dir=TOGGLE_DIR_PATH)
    patched, _record = shim_patch.apply_shim(dgd, cfg)
    kube.replace(ref, patched)
    started = time.monotonic()
    wait_until(
        lambda: True if rolled_out(kube.get(ref), [WORKER]) else None,
        what="the shimmed DGD rolled out",
        timeout_s=POD_TIMEOUT_S,
        interval_s=0.5,
    )
    FIGURES["shim_rollout_s"] = time.monotonic() - started
    workers = _ready_workers(kube)
    assert len(workers) == OPTIONS.workers and not before & {p["metadata"]["name"] for p in workers}
    for pod in workers:
        assert [c["name"] for c in pod["spec"]["initContainers"]] == [shim_patch.INIT_NAME]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
        assert env["LD_PRELOAD"].endswith(shim_patch.LIB_NAME)
    missing, total = wait_until(
        lambda: r if not (r := pods_missing_marker(kube, NS, kube.get(ref), cfg.toggle_file, None))[0] else None,
        what="the shim's marker in every worker's log",
        timeout_s=60,
        interval_s=0.5,
    )
    assert total == OPTIONS.workers
