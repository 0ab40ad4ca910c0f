"""gpu-fault, XID 79, run by real Argo against the real cluster's GPU world: the three consumers of one
GPU failure on one timeline (issues 14, 17, 20).

One lab (lab.argo.world_lab): 3 GPU nodes + cpu-0 (with 2 GPU nodes NVSentinel's circuit breaker
trips after one cordon), Argo from its own manifests, the lab's S3 repository, faultflow installed by
`kubectl apply -k` as a user does, and the GPU world (DGD operator and NVSentinel SIMULATORs, the
`vllm-agg` DGD's workers, its frontend Service). The run is the user's own command:
`argo submit -n faultflow --from workflowtemplate/gpu-fault -p xid=79 -p expect-consumers=allocatable … --wait`.

The three consumers of the one injection (inject-xid switches the node's toggle on and writes the
kernel-log line at the same moment):
* CUDA: the shim in the workers makes their CUDA calls fail (the worker's log shows the shim
  injecting; the load sees requests fail);
* the kernel log: the NVSentinel SIMULATOR's pod on the node reads the XID line and quarantines it;
* NVML: the node's device plugin reads NVML through faultflow's interposer and the node's toggle;
  XID 79 turns the GPU Unhealthy and `nvidia.com/gpu` allocatable drops (wait-for-cordon
  `--expect-consumer allocatable`).

After the run the lab is as the scenario leaves it: the toggles off, the DGD without the shim, the
faulted node still quarantined by NVSentinel (its remediation, not ours, to undo). Figures are printed,
never asserted. Needs root and the Debian node packages, like tests/lab/test_real_argo_faultflow.py.
`FAULTFLOW_ARGO_LINES` (default v4.0) selects the Argo line.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from lab import tools
from lab.argo import world_lab
from steps.gpu import nvsentinel as nv
from steps.gpu import toggle
from steps.kube.client import Ref, connect
from steps.workload import shim_patch

LINES = tuple(line for line in os.environ.get("FAULTFLOW_ARGO_LINES", "v4.0").split(",") if line)
if unknown := set(LINES) - set(tools.ARGO_LINES):
    raise ValueError(f"FAULTFLOW_ARGO_LINES: unknown Argo line(s) {sorted(unknown)}; known: {sorted(tools.ARGO_LINES)}")
XID = 79
RESULTS: dict[str, dict] = {}

# Work in progress, out of the default run: the CUDA consumer is reached only when the worker on the
# node inject-cuda-shim settles on holds GPU `gpu` (0) of it, which Kubernetes' placement does not
# guarantee (see the README's "gpu-fault on real Argo" findings). FAULTFLOW_WIP=1 runs it.
pytestmark = [
    pytest.mark.timeout(3000),
    pytest.mark.skipif(os.environ.get("FAULTFLOW_WIP") != "1", reason="work in progress: FAULTFLOW_WIP=1 runs it"),
]


@pytest.fixture(scope="module", params=LINES)
def lab(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"gpu-fault-{request.param}")
    handle = world_lab.start(folder, request.param)
    try:
        print(f"\nfigures ({handle.line}): {world_lab.real.figures_line(handle.figures)}")
        yield handle
    finally:
        print(f"\nlab down: {world_lab.real.teardown_summary(handle.stop())}")
        shutil.rmtree(folder, ignore_errors=True)  # each node's image store is hundreds of MB


def _summary(workflow: dict) -> str:
    nodes = workflow["status"].get("nodes", {}).values()
    return json.dumps({n["displayName"]: [n["phase"], n.get("message", "")] for n in nodes})


def _check(report: dict, name: str) -> dict:
    matches = [c for c in report["checks"] if c["name"] == name]
    assert matches, f"no check {name}: {[c['name'] for c in report['checks']]}"
    return matches[-1]


def _first(report: dict, event: str, **fields) -> dict | None:
    return next(
        (e for e in report["timeline"] if e["event"] == event and all(e.get(k) == v for k, v in fields.items())),
        None,
    )


def test_gpu_fault_xid_79_reaches_all_three_consumers(lab):
    workflow = lab.submit_and_wait("gpu-fault", lab.gpu_fault_parameters(XID, **{"expect-consumers": "allocatable"}))
    report = lab.report(workflow)
    RESULTS[lab.line] = {"workflow": workflow, "report": report}
    checks = {c["name"]: c["status"] for c in report["checks"]}
    print(f"\nchecks ({lab.line}): {json.dumps(checks)}")
    injected = _first(report, "fault_injected", kind="xid")
    assert injected is not None and injected["xid"] == XID, json.dumps(report["timeline"])[:3000]
    fault = injected["time"]

    def after(entry: dict | None) -> str:
        return "–" if entry is None else f"{entry['time'] - fault:+.1f}s"

    cuda = _first(report, "first_failed_request")
    reached = _first(report, "fault_reached_workload")
    detected = _first(report, "xid_detected")
    cordoned = _first(report, "node_cordoned")
    consumer = _first(report, "consumer_detected", consumer=next((c["consumer"] for c in report["consumers"]), None))
    recovered = _first(report, "inference_recovered")

    def latency(entry: dict | None) -> str:
        # The steps measure their answers from the fault themselves (latency_ms); an answer already
        # there when wait-for-cordon began is an upper bound (at_start).
        if entry is None or entry.get("latency_ms") is None:
            return after(entry)
        return f"{'<=' if entry.get('at_start') else '+'}{entry['latency_ms'] / 1000:.1f}s"

    print(
        f"timeline ({lab.line}, from the fault at t=0): "
        f"cuda: first failed request {after(cuda)}, shim's line read in the worker's log {after(reached)} | "
        f"kernel log: NVSentinel condition {latency(detected)}, quarantine {latency(cordoned)} | "
        f"nvml: {(consumer or {}).get('evidence', '–')} {latency(consumer)} | "
        f"workers evicted {after(_first(report, 'pods_evicted'))} | recovered {after(recovered)}"
    )
    figures = report["figures"]
    print(
        f"figures ({lab.line} gpu-fault {XID}): workflow_s={workflow['workflow_s']:.1f} "
        + " ".join(f"{k}={v:.2f}" for k, v in sorted(figures.items()) if isinstance(v, (int, float)))
    )
    assert workflow["status"]["phase"] == "Succeeded", _summary(workflow)
    # CUDA: the shim's injecting line is in a worker's log on the node.
    assert _check(report, "fault_reached_workload")["status"] == "passed", json.dumps(reached)
    assert reached is not None and reached["reached"], json.dumps(reached)
    # The kernel log: NVSentinel quarantined the node after the fault.
    assert cordoned is not None and cordoned["time"] >= fault, json.dumps(report["timeline"])[:3000]
    # NVML: the device plugin took the GPU out of allocatable.
    (answer,) = report["consumers"]
    assert answer["answered"] and answer["check"] == "allocatable", json.dumps(report["consumers"])
    assert _check(report, "consumer_allocatable")["status"] == "passed"
    # Recovery: inference back within the deadline; the verdict passes.
    assert recovered is not None, json.dumps(checks)
    assert report["verdict"] == "passed", json.dumps(report["checks"])


def test_the_run_leaves_no_fault_behind(lab):
    """The toggles off on every GPU node, the DGD without the shim; the faulted node as NVSentinel
    leaves it (quarantined), every other node schedulable."""
    assert lab.line in RESULTS, "the gpu-fault run did not finish"
    kube = connect(str(lab.cluster.kubeconfig))
    for name, node in lab.cluster.nodes.items():
        if node.plan.gpus:
            assert not toggle.read(node.toggle_file).on, f"{name}: the toggle is still on"
    dgd = kube.get(world_lab.lab_world.dgd_ref(lab.world.options))
    assert shim_patch.INIT_NAME not in json.dumps(dgd["spec"]), "the DGD still carries the shim"
    workflow = RESULTS[lab.line]["workflow"]
    faulted = next(
        p["value"]
        for n in workflow["status"]["nodes"].values()
        if n["displayName"].startswith("inject-cuda-shim")  # the Retry node and its pods, "(0)"…
        for p in (n.get("outputs") or {}).get("parameters") or []
        if p["name"] == "node"
    )
    for item in kube.list(Ref("v1", "nodes", None, ""))["items"]:
        if item["metadata"]["name"] != faulted:
            assert not item["spec"].get("unschedulable"), f"{item['metadata']['name']} is cordoned"
            assert not nv.is_quarantined(item)
