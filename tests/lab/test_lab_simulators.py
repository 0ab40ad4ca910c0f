"""Each lab simulator's contract against the real kube-apiserver (the session clusters of tests/conftest.py).

Every test gets its own namespace, node names and lab directory; the simulators are scoped to them, so
tests never see each other's objects.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.dgd_examples import example_dgd
from lab.dgd_operator_simulator import HASH_LABEL, DgdOperatorSimulator
from lab.gpu_nodes import NodeSpec, create_nodes, prepare_node_root
from lab.kubelet_simulator import KubeletConfig, KubeletSimulator, now
from lab.layout import LabDir
from lab.nvsentinel_metrics import DEDUP_STORE_AND_ANALYSE
from lab.nvsentinel_simulator import MANUAL_UNCORDON_ANNOTATION, NvsentinelConfig, NvsentinelSimulator
from lab.processes import wait_until
from lab.world import SHIM_IMAGE_ROOT, build_driver, create_namespace, dgd_ref, prepare_shim_image
from steps.gpu import kmsg, toggle
from steps.gpu import nvsentinel as nv
from steps.gpu.node_watch import watch_node_until
from steps.gpu.pci import list_gpus
from steps.gpu.toggle_pod import run_to_completion, toggle_off_pod
from steps.kube.client import Kube, Ref, connect
from steps.kube.objects import pod_ready
from steps.workload import shim_patch
from steps.workload.dynamo import COMPONENT_LABEL
from steps.workload.rollout import rolled_out

_ids = itertools.count()
FAST = NvsentinelConfig(detect_delay_s=0.05, quarantine_delay_s=0.05, drain_delay_s=0.05, eviction_grace_s=1)


@dataclass
class Mini:
    """A namespace, a few simulated nodes and the simulators of one test."""

    kube: Kube
    kubeconfig: str
    lab: LabDir
    ns: str
    nodes: list[NodeSpec]
    started: list = field(default_factory=list)

    def gpu(self, i: int) -> str:
        return [n.name for n in self.nodes if n.is_gpu][i]

    def kubelet(self) -> KubeletSimulator:
        shim_root = prepare_shim_image(self.lab)
        config = KubeletConfig(
            lab=self.lab,
            nodes=frozenset(n.name for n in self.nodes),
            driver_dir=build_driver(),
            image_paths={SHIM_IMAGE_ROOT: shim_root},
            image_env={"FAULTFLOW_SHIM_SOURCE": str(shim_root / shim_patch.LIB_NAME)},
        )
        return self._keep(KubeletSimulator(connect(self.kubeconfig), config).start())

    def operator(self, version: str) -> DgdOperatorSimulator:
        return self._keep(
            DgdOperatorSimulator(connect(self.kubeconfig), version, namespace=self.ns, nodes=frozenset(n.name for n in self.nodes)).start()
        )

    def nvsentinel(self, config: NvsentinelConfig = FAST, first_poll: bool = True) -> NvsentinelSimulator:
        sim = NvsentinelSimulator(
            connect(self.kubeconfig),
            self.lab,
            [n.name for n in self.nodes if n.is_gpu],
            NvsentinelConfig(**{**config.__dict__, "namespace": f"{self.ns}-nvs"}),
        )
        sim.install()
        self._keep(sim.start())
        return sim.wait_first_poll() if first_poll else sim

    def _keep(self, sim):
        self.started.append(sim)
        return sim

    def node(self, name: str) -> dict:
        return self.kube.get(Ref("v1", "nodes", None, name))

    def write_kmsg(self, node: str, line: bytes) -> None:
        kmsg.write_record(str(self.lab.node_root(node) / "dev" / "kmsg"), line)

    def pci(self, node: str) -> str:
        return list_gpus(str(self.lab.node_root(node) / "proc"))[0].pci


@pytest.fixture
def mini(request, cluster, tmp_path):
    return _mini(request, cluster, tmp_path)


@pytest.fixture
def mini_dgd(request, dgd_cluster, tmp_path):
    version, target = dgd_cluster
    return version, _mini(request, target, tmp_path)


def _mini(request, target, tmp_path) -> Mini:
    tag = f"s{next(_ids)}-{os.getpid() % 10000}"
    kube = connect(str(target.kubeconfig))
    ns = f"lab-{tag}"
    create_namespace(kube, ns)
    nodes = [NodeSpec(f"gpu-a-{tag}", 2), NodeSpec(f"gpu-b-{tag}", 2), NodeSpec(f"cpu-{tag}")]
    lab = LabDir(tmp_path / "lab")
    for index, spec in enumerate(nodes):
        prepare_node_root(lab.node_root(spec.name), spec, index)
    create_nodes(kube, nodes, now())
    world = Mini(kube, str(target.kubeconfig), lab, ns, nodes)
    request.addfinalizer(lambda: [sim.stop() for sim in reversed(world.started)])
    return world


def pods_of(m: Mini, component: str) -> list[dict]:
    items = m.kube.list(Ref("v1", "pods", m.ns, ""), label_selector=f"{COMPONENT_LABEL}={component}").get("items") or []
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def test_operator_materialises_a_dgd_and_reports_its_rollout(mini_dgd):
    version, m = mini_dgd
    m.kubelet()
    m.operator(version)
    ref = dgd_ref(version, m.ns, "llm")
    m.kube.create(ref, example_dgd(version, "llm", worker_replicas=2))
    wait_until(lambda: True if rolled_out(m.kube.get(ref), ["VllmWorker"]) else None, what="rollout", timeout_s=60)
    status = m.kube.get(ref)["status"]
    key = "components" if version == "v1beta1" else "services"
    assert status[key]["VllmWorker"] | {} == {
        "componentKind": "Deployment",
        "componentName": "llm-vllmworker",
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
    }
    workers, frontends = pods_of(m, "VllmWorker"), pods_of(m, "Frontend")
    assert len(workers) == 2 and len(frontends) == 1
    labels = workers[0]["metadata"]["labels"]
    assert labels["nvidia.com/dynamo-graph-deployment-name"] == "llm" and labels["nvidia.com/dynamo-component-type"] == "worker"
    # GPU workers spread over the GPU nodes, the frontend keeps off them.
    assert {p["spec"]["nodeName"] for p in workers} == {m.gpu(0), m.gpu(1)}
    assert frontends[0]["spec"]["nodeName"] == m.nodes[-1].name
    assert all(pod_ready(p) and p["status"]["podIP"] == "127.0.0.1" for p in workers + frontends)
    service = m.kube.get(Ref("v1", "services", m.ns, "llm-frontend"))
    assert service["spec"]["ports"][0]["port"] == 8000


def test_operator_rolls_a_changed_component_and_replaces_evicted_pods(mini):
    m = mini
    m.kubelet()
    m.operator("v1beta1")
    ref = dgd_ref("v1beta1", m.ns, "llm")
    m.kube.create(ref, example_dgd("v1beta1", "llm", worker_replicas=1))
    wait_until(lambda: True if rolled_out(m.kube.get(ref), ["VllmWorker"]) else None, what="rollout", timeout_s=60)
    before = pods_of(m, "VllmWorker")
    frontend_before = pods_of(m, "Frontend")
    # The shim added to the worker (as inject-cuda-shim does): that component's pods are replaced.
    obj = m.kube.get(ref)
    new, _ = shim_patch.apply_shim(obj, shim_patch.ShimConfig(image="shim:1", xid=79, toggle_dir="/var/lib/faultflow"))
    m.kube.guarded_patch(ref, shim_patch.patch_ops(obj, new))
    wait_until(lambda: True if rolled_out(m.kube.get(ref), ["VllmWorker"]) else None, what="shim rollout", timeout_s=60)
    after = pods_of(m, "VllmWorker")
    assert len(after) == 1 and after[0]["metadata"]["labels"][HASH_LABEL] != before[0]["metadata"]["labels"][HASH_LABEL]
    assert after[0]["spec"]["initContainers"][0]["name"] == shim_patch.INIT_NAME
    assert [p["metadata"]["uid"] for p in pods_of(m, "Frontend")] == [p["metadata"]["uid"] for p in frontend_before]
    # The init container ran the shim image's install.sh against the node's toggle directory.
    node = after[0]["spec"]["nodeName"]
    assert not toggle.read(m.lab.node_root(node) / "var/lib/faultflow/toggle").on
    # Cordon the node and evict the worker: it comes back on the other GPU node.
    m.kube.merge_patch(Ref("v1", "nodes", None, node), {"spec": {"unschedulable": True}})
    name = after[0]["metadata"]["name"]
    m.kube.request(
        "POST",
        f"/api/v1/namespaces/{m.ns}/pods/{name}/eviction",
        body={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": m.ns}},
    )
    other = m.gpu(1) if node == m.gpu(0) else m.gpu(0)
    wait_until(
        lambda: True if [p for p in pods_of(m, "VllmWorker") if p["spec"].get("nodeName") == other and pod_ready(p)] else None,
        what="worker recreated on the other node",
        timeout_s=60,
    )
    wait_until(
        lambda: True if m.kube.get_or_none(Ref("v1", "pods", m.ns, name)) is None else None,
        what="evicted pod finalised by the kubelet simulator",
        timeout_s=30,
    )


def test_kubelet_runs_a_toggle_off_pod_on_the_nodes_directory(mini):
    m = mini
    m.kubelet()
    node = m.gpu(0)
    toggle_file = m.lab.node_root(node) / "var/lib/faultflow/toggle"
    toggle.write(toggle_file, toggle.Toggle(on=True, xid=79))
    # What cleanup-dgd does: a pod pinned to the node with the toggle hostPath, watched to Succeeded.
    run_to_completion(m.kube, toggle_off_pod("r1", m.ns, node, "/var/lib/faultflow", "steps:1"), timeout_s=60)
    assert not toggle.read(toggle_file).on
    assert "toggle" in (m.lab.pod_log(m.ns, toggle_off_pod("r1", m.ns, node, "/var/lib/faultflow", "x")["metadata"]["name"]).read_text())


def test_kubelet_restarts_a_crashing_worker_with_backoff(mini):
    m = mini
    m.kubelet()
    m.operator("v1beta1")
    ref = dgd_ref("v1beta1", m.ns, "llm")
    body = example_dgd("v1beta1", "llm", worker_replicas=1)
    new, _ = shim_patch.apply_shim(body, shim_patch.ShimConfig(image="shim:1", xid=94, toggle_dir="/var/lib/faultflow"))
    m.kube.create(ref, new)
    wait_until(lambda: True if rolled_out(m.kube.get(ref), ["VllmWorker"]) else None, what="rollout", timeout_s=60)
    pod = pods_of(m, "VllmWorker")[0]
    toggle_file = m.lab.node_root(pod["spec"]["nodeName"]) / "var/lib/faultflow/toggle"
    toggle.write(toggle_file, toggle.Toggle(on=True, xid=94))

    def restarted() -> dict | None:
        live = m.kube.get(Ref("v1", "pods", m.ns, pod["metadata"]["name"]))
        status = live["status"]["containerStatuses"][0]
        return live if status["restartCount"] >= 2 and "terminated" in status["lastState"] else None

    crashed = wait_until(restarted, what="worker restarted twice", timeout_s=60)
    assert crashed["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    toggle.write(toggle_file, toggle.Toggle(on=False))
    wait_until(
        lambda: True if pod_ready(m.kube.get(Ref("v1", "pods", m.ns, pod["metadata"]["name"]))) else None,
        what="worker ready again",
        timeout_s=60,
    )
    log = m.lab.pod_log(m.ns, pod["metadata"]["name"]).read_text()
    assert "injecting XID 94" in log and "CUDA error 214" in log


def quarantined(m: Mini, node: str, window_s: float) -> bool:
    import time

    _, seen = watch_node_until(m.kube, node, nv.is_quarantined, time.monotonic() + window_s)
    return seen is not None


def test_nvsentinel_quarantines_drains_and_releases_on_gpu_reset(mini):
    m = mini
    m.kubelet()
    nvs = m.nvsentinel()
    node = m.gpu(0)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "job", "namespace": m.ns},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["/bin/sh", "-c", "exec sleep 600"]}],
        },
    }
    m.kube.create(Ref("v1", "pods", m.ns, ""), pod)
    wait_until(
        lambda: True if (m.kube.get(Ref("v1", "pods", m.ns, "job")).get("status") or {}).get("phase") == "Running" else None,
        what="pod running",
        timeout_s=30,
    )
    pci = m.pci(node)
    m.write_kmsg(node, kmsg.xid_line(79, pci, 4242, "python3"))
    wait_until(
        lambda: True if (m.node(node)["metadata"].get("labels") or {}).get(nv.STATE_LABEL) == "drain-succeeded" else None,
        what="drain-succeeded",
        timeout_s=30,
    )
    obj = m.node(node)
    labels, annotations = obj["metadata"]["labels"], obj["metadata"]["annotations"]
    assert obj["spec"]["unschedulable"] is True and annotations[nv.CORDONED_ANNOTATION] == "True"
    assert labels[nv.CORDON_BY_LABEL] == "NVSentinel" and labels[nv.CORDON_REASON_LABEL] == "Syslog-fatal-error-ruleset"
    event = json.loads(annotations[nv.EVENT_ANNOTATION])[0]
    assert (event["errorCode"], event["recommendedAction"], event["isFatal"]) == (["79"], 24, True)
    assert {"entityType": "PCI", "entityValue": pci} in event["entitiesImpacted"]
    condition = next(c for c in obj["status"]["conditions"] if c["type"] == nv.XID_CONDITION)
    assert condition["status"] == "True" and condition["reason"] == "SysLogsXIDErrorIsNotHealthy"
    assert condition["message"].startswith(f"ErrorCode:79 PCI:{pci} GPU_UUID:GPU-")
    assert condition["message"].endswith("Recommended Action=RESTART_BM;")
    assert m.kube.get_or_none(Ref("v1", "pods", m.ns, "job")) is None  # evicted, and gone
    assert [line.split(": ", 1)[1] for line in nvs.log if "nvsentinel-state" in line] == [
        f"{nv.STATE_LABEL}=draining",
        f"{nv.STATE_LABEL}=drain-succeeded",
    ]
    # The GPU reset's acknowledgement is the healthy event that releases the node.
    uuid = list_gpus(str(m.lab.node_root(node) / "proc"))[0].uuid
    m.write_kmsg(node, f"<6>kernel: GPU reset executed: {uuid}, success: true\n".encode())
    wait_until(lambda: True if not m.node(node)["spec"].get("unschedulable") else None, what="uncordoned", timeout_s=30)
    obj = m.node(node)
    assert nv.STATE_LABEL not in obj["metadata"]["labels"] and nv.EVENT_ANNOTATION not in (obj["metadata"].get("annotations") or {})
    assert obj["metadata"]["labels"][nv.UNCORDON_BY_LABEL] == "NVSentinel"
    wait_until(
        lambda: (
            True if next(c for c in m.node(node)["status"]["conditions"] if c["type"] == nv.XID_CONDITION)["status"] == "False" else None
        ),
        what="condition healthy",
        timeout_s=30,
    )


def test_nvsentinel_non_fatal_xid_is_an_event_and_no_cordon(mini):
    m = mini
    m.nvsentinel()
    node = m.gpu(1)
    m.write_kmsg(node, kmsg.xid_line(94, m.pci(node), 7, "python3"))

    def event() -> dict | None:
        items = m.kube.list(Ref("v1", "events", "default", ""), field_selector=f"involvedObject.name={node}").get("items") or []
        return items[0] if items else None

    found = wait_until(event, what="NVSentinel's node event", timeout_s=30)
    assert found["reason"] == "SysLogsXIDErrorIsNotHealthy" and "ErrorCode:94 " in found["message"]
    assert "Recommended Action=NONE;" in found["message"]
    assert not quarantined(m, node, 1.5)


def test_nvsentinel_line_without_the_sacrificial_identifier_is_not_seen(mini):
    m = mini
    m.nvsentinel()
    node = m.gpu(0)
    # journald eats a leading `NVRM:` as the identifier: NVSentinel's regex no longer matches (kmsg.py).
    m.write_kmsg(node, f"<3>NVRM: Xid (PCI:{m.pci(node)}): 79, pid=1, name=x, GPU has fallen off the bus.\n".encode())
    assert not quarantined(m, node, 1.5)


def test_nvsentinel_circuit_breaker_trips_and_then_halts_quarantine(mini):
    m = mini
    nvs = m.nvsentinel()  # 2 GPU nodes, breaker at 50 %: the first cordon trips it
    first, second = m.gpu(0), m.gpu(1)
    m.write_kmsg(first, kmsg.xid_line(79, m.pci(first), 1, "python3"))
    assert quarantined(m, first, 30)
    breaker = Ref("v1", "configmaps", nvs.config.namespace, nv.CIRCUIT_BREAKER_CONFIGMAP)
    wait_until(lambda: True if nv.circuit_breaker_tripped(m.kube.get(breaker)["data"]) else None, what="tripped", timeout_s=30)
    m.write_kmsg(second, kmsg.xid_line(79, m.pci(second), 1, "python3"))
    wait_until(
        lambda: True if any(c["type"] == nv.XID_CONDITION for c in m.node(second)["status"].get("conditions") or []) else None,
        what="detected on the second node",
        timeout_s=30,
    )
    assert not quarantined(m, second, 1.5)


def test_nvsentinel_presence_is_what_preflight_checks(mini):
    m = mini
    nvs = m.nvsentinel()
    pods = m.kube.list(
        Ref("v1", "pods", nvs.config.namespace, ""), label_selector=nv.SHM_POD_LABEL, field_selector=f"spec.nodeName={m.gpu(0)}"
    )["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    cm = m.kube.get(Ref("v1", "configmaps", nvs.config.namespace, nv.CIRCUIT_BREAKER_CONFIGMAP))
    assert cm["data"] == {"status": "CLOSED"}
    node = m.node(m.gpu(0))
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "2" and not (node["spec"].get("taints"))
    assert Path(m.lab.node_root(m.gpu(0)) / "dev" / "kmsg").is_fifo()


# --- what NVSentinel really does (nvsentinel-2026-12.md): each difference driven both ways ------------


def condition(m: Mini, node: str) -> dict | None:
    return next((c for c in m.node(node)["status"].get("conditions") or [] if c["type"] == nv.XID_CONDITION), None)


def noted(nvs: NvsentinelSimulator, text: str) -> bool | None:
    return True if any(text in line for line in nvs.log) else None


def release(m: Mini, node: str) -> None:
    """The GPU reset's acknowledgement: NVSentinel's healthy event un-quarantines the node."""
    uuid = list_gpus(str(m.lab.node_root(node) / "proc"))[0].uuid
    m.write_kmsg(node, f"<6>kernel: GPU reset executed: {uuid}, success: true\n".encode())
    wait_until(lambda: True if not m.node(node)["spec"].get("unschedulable") else None, what="uncordoned", timeout_s=30)


def test_nvsentinel_condition_carries_the_message_prefix_and_the_metadata_rule(mini):
    m = mini
    nvs = m.nvsentinel()
    with_md, without_md = m.gpu(0), m.gpu(1)
    (m.lab.node_root(without_md) / "var/lib/nvsentinel/gpu_metadata.json").unlink()
    for node in (with_md, without_md):
        m.write_kmsg(node, kmsg.xid_line(48, m.pci(node), 7, "python3"))
    for node, action in ((with_md, "COMPONENT_RESET"), (without_md, "RESTART_VM")):
        found = wait_until(lambda node=node: condition(m, node), what=f"condition on {node}", timeout_s=30)
        assert f" MESSAGE=NVRM: Xid (PCI:{m.pci(node)}): 48, pid=7" in found["message"]
        assert found["message"].endswith(f"Recommended Action={action};")
    assert "GPU_UUID:GPU-" in condition(m, with_md)["message"] and "GPU_UUID" not in condition(m, without_md)["message"]
    assert nvs.config.breaker_enabled


def test_nvsentinel_154_is_classified_from_the_written_recovery_text(mini):
    m = mini
    m.nvsentinel()
    reset, none = m.gpu(0), m.gpu(1)
    m.write_kmsg(reset, kmsg.xid_line(154, m.pci(reset), 1, "p", recovery="gpu-reset"))
    m.write_kmsg(none, kmsg.xid_line(154, m.pci(none), 1, "p", recovery="none"))
    assert quarantined(m, reset, 30)
    assert condition(m, reset)["message"].endswith("Recommended Action=COMPONENT_RESET;")
    assert not quarantined(m, none, 1.5) and condition(m, none) is None


def test_nvsentinel_skips_lines_written_before_its_first_poll(mini):
    m = mini
    nvs = m.nvsentinel(NvsentinelConfig(**{**FAST.__dict__, "detect_delay_s": 1.0}), first_poll=False)
    before, after = m.gpu(0), m.gpu(1)
    m.write_kmsg(before, kmsg.xid_line(79, m.pci(before), 1, "p"))
    assert not nvs.polled[before].is_set(), "the line must land before the first poll for this test to mean anything"
    nvs.wait_first_poll()
    m.write_kmsg(after, kmsg.xid_line(79, m.pci(after), 1, "p"))
    assert quarantined(m, after, 30)
    assert wait_until(lambda: noted(nvs, f"{before}: first poll: 1 kernel records"), what="skip noted", timeout_s=5)
    assert not quarantined(m, before, 1.5)


def test_nvsentinel_deduplicates_a_repeat_inside_the_window_only(mini):
    m = mini
    nvs = m.nvsentinel(NvsentinelConfig(**{**FAST.__dict__, "breaker_enabled": False}))
    node = m.gpu(0)
    m.write_kmsg(node, kmsg.xid_line(48, m.pci(node), 1, "p"))
    assert quarantined(m, node, 30)
    # A person uncordons (NVSentinel's way to cancel a break-fix): the quarantine goes, the dedup entry stays.
    m.kube.merge_patch(Ref("v1", "nodes", None, node), {"spec": {"unschedulable": None}})
    wait_until(lambda: True if nv.STATE_LABEL not in m.node(node)["metadata"].get("labels", {}) else None, what="cancelled", timeout_s=30)
    assert not m.node(node)["spec"].get("unschedulable")  # cancelled while draining: the drain stopped, nothing re-cordoned
    assert m.node(node)["metadata"]["annotations"][MANUAL_UNCORDON_ANNOTATION] == "true"
    # The same XID on the same GPU inside 3 minutes: stored only, no cordon (PR #1283).
    m.write_kmsg(node, kmsg.xid_line(48, m.pci(node), 2, "other"))  # pid and name are not in the key
    wait_until(lambda: noted(nvs, "deduplicated: repeat of ErrorCode:48"), what="dedup noted", timeout_s=30)
    assert not quarantined(m, node, 1.5)
    assert nvs.metrics.registry.get_sample_value(DEDUP_STORE_AND_ANALYSE, {"check": nv.XID_CONDITION, "err_code": "48"}) == 1
    # A healthy event (the GPU reset's acknowledgement) clears the matching entries: the next one acts.
    uuid = list_gpus(str(m.lab.node_root(node) / "proc"))[0].uuid
    m.write_kmsg(node, f"<6>kernel: GPU reset executed: {uuid}, success: true\n".encode())
    wait_until(lambda: noted(nvs, f"GPU reset of {uuid}"), what="reset noted", timeout_s=30)
    m.write_kmsg(node, kmsg.xid_line(48, m.pci(node), 3, "p"))
    assert quarantined(m, node, 30)


def test_nvsentinel_without_dedup_quarantines_the_repeat(mini):
    m = mini
    # Two GPU nodes: one cordon would trip a 50 % breaker, which would halt the second quarantine.
    m.nvsentinel(NvsentinelConfig(**{**FAST.__dict__, "dedup_window_s": 0, "breaker_enabled": False}))
    node = m.gpu(0)
    m.write_kmsg(node, kmsg.xid_line(48, m.pci(node), 1, "p"))
    assert quarantined(m, node, 30)
    release(m, node)
    m.write_kmsg(node, kmsg.xid_line(48, m.pci(node), 2, "p"))
    assert quarantined(m, node, 30)


@pytest.mark.parametrize("posture", ["monitor-only", "dry-run"])
def test_nvsentinel_postures_annotate_without_a_cordon(mini, posture):
    m = mini
    nvs = m.nvsentinel(NvsentinelConfig(**{**FAST.__dict__, "posture": posture}))
    node = m.gpu(0)
    m.write_kmsg(node, kmsg.xid_line(79, m.pci(node), 1, "p"))
    final = "drain-succeeded" if posture == "dry-run" else "quarantined"
    wait_until(
        lambda: True if (m.node(node)["metadata"].get("labels") or {}).get(nv.STATE_LABEL) == final else None,
        what=f"state {final}",
        timeout_s=30,
    )
    obj = m.node(node)
    assert json.loads(obj["metadata"]["annotations"][nv.EVENT_ANNOTATION])[0]["errorCode"] == ["79"]
    assert not obj["spec"].get("unschedulable") and condition(m, node)["status"] == "True"
    toml = m.kube.get(Ref("v1", "configmaps", nvs.config.namespace, nv.FAULT_QUARANTINE_CONFIGMAP))["data"]["config.toml"]
    assert "shouldCordon = false" in toml
    # The GPU reset's healthy event clears the finding; there was no cordon to lift.
    uuid = list_gpus(str(m.lab.node_root(node) / "proc"))[0].uuid
    m.write_kmsg(node, f"<6>kernel: GPU reset executed: {uuid}, success: true\n".encode())
    wait_until(
        lambda: True if nv.STATE_LABEL not in (m.node(node)["metadata"].get("labels") or {}) else None, what="finding cleared", timeout_s=30
    )
    assert not m.node(node)["spec"].get("unschedulable")


def test_nvsentinel_opted_out_node_is_stored_only(mini):
    m = mini
    nvs = m.nvsentinel()
    out, managed = m.gpu(0), m.gpu(1)
    m.kube.merge_patch(Ref("v1", "nodes", None, out), {"metadata": {"labels": {nv.OPT_OUT_LABEL: "false"}}})
    m.write_kmsg(out, kmsg.xid_line(79, m.pci(out), 1, "p"))
    m.write_kmsg(managed, kmsg.xid_line(79, m.pci(managed), 1, "p"))
    assert quarantined(m, managed, 30)
    wait_until(lambda: noted(nvs, f"{out}: {nv.OPT_OUT_LABEL}=false: stored only"), what="stored only", timeout_s=30)
    assert condition(m, out) is None and not quarantined(m, out, 1.0)


@pytest.mark.parametrize("max_nodes,trips", [(1, True), (0, False)])
def test_nvsentinel_breaker_takes_the_lower_of_percentage_and_max_nodes(mini, max_nodes, trips):
    m = mini
    nvs = m.nvsentinel(NvsentinelConfig(**{**FAST.__dict__, "breaker_percentage": 100, "breaker_max_nodes": max_nodes}))
    node = m.gpu(0)
    m.write_kmsg(node, kmsg.xid_line(79, m.pci(node), 1, "p"))
    assert quarantined(m, node, 30)
    wait_until(
        lambda: True if (m.node(node)["metadata"]["labels"].get(nv.STATE_LABEL) or "").startswith("drain-") else None,
        what="drained",
        timeout_s=30,
    )
    breaker = m.kube.get(Ref("v1", "configmaps", nvs.config.namespace, nv.CIRCUIT_BREAKER_CONFIGMAP))["data"]
    assert nv.circuit_breaker_tripped(breaker) is trips


def test_nvsentinel_xid_79_pair_is_one_event_and_the_fallen_off_check_fires_alone(mini):
    m = mini
    nvs = m.nvsentinel(NvsentinelConfig(**{**FAST.__dict__, "breaker_enabled": False}))
    pair, alone = m.gpu(0), m.gpu(1)
    for record in kmsg.xid_records(79, m.pci(pair), 1, "p"):
        m.write_kmsg(pair, record)
    assert quarantined(m, pair, 30)
    event = json.loads(m.node(pair)["metadata"]["annotations"][nv.EVENT_ANNOTATION])
    assert [e["errorCode"] for e in event] == [["79"]]
    # The older wording NVSentinel's GPU-fallen-off check matches, with no XID before it.
    m.write_kmsg(
        alone,
        f"<3>kernel: NVRM: The NVIDIA GPU {m.pci(alone)}.0 (PCI ID: 10de:2330) installed in this system "
        "has fallen off the bus and is not responding to commands.\n".encode(),
    )
    assert quarantined(m, alone, 30)
    fallen = json.loads(m.node(alone)["metadata"]["annotations"][nv.EVENT_ANNOTATION])
    assert fallen[0]["errorCode"] == ["GPU_FALLEN_OFF_BUS"] and fallen[0]["checkName"] == "SysLogsGPUFallenOff"
    assert nvs.log
