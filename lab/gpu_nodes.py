"""The lab's simulated nodes: Node objects in the API and, for each, a directory that stands in for
the node's root filesystem.

A GPU node advertises `nvidia.com/gpu` capacity and the labels the GPU Operator and NVSentinel's
labeler put on a GPU node (`nvidia.com/gpu.present=true`, `nvsentinel.dgxc.nvidia.com/driver.installed
=true`), and is Ready. Its directory holds:

* `dev/kmsg` — a FIFO standing in for /dev/kmsg: one `write()` is one record, and the NVSentinel
  simulator keeps it open for reading, so a writer's `open()` never blocks;
* `var/lib/faultflow/` — the toggle directory (the hostPath the shim's toggle lives in);
* `proc/driver/nvidia/gpus/<bus id>/information` — the driver's /proc tree, so `inject-xid --proc-root`
  resolves a GPU index to its PCI address exactly as on a real node;
* `var/lib/nvsentinel/gpu_metadata.json` — what NVSentinel's metadata-collector writes (driver version,
  each GPU's UUID and PCI address); without it NVSentinel turns COMPONENT_RESET into RESTART_VM.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lab.host_paths import node_path
from steps.gpu import nvsentinel, toggle
from steps.kube import objects as o
from steps.kube.client import Kube, Ref

TOGGLE_DIR = toggle.DEFAULT_DIR
KMSG = "/dev/kmsg"
PROC = "/proc"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    gpus: int = 0  # 0: a CPU node (frontend, system pods)
    pod_cidr: str = ""  # spec.podCIDR, as the node IPAM controller assigns it ("": none)
    gpu_metadata: bool = True  # NVSentinel's metadata-collector wrote var/lib/nvsentinel/gpu_metadata.json

    @property
    def is_gpu(self) -> bool:
        return self.gpus > 0


def bus_id(node_index: int, gpu: int) -> str:
    """A plausible, per-node distinct PCI bus id (8-digit domain, as the driver names the directory)."""
    return f"0000{node_index:04x}:{0x17 + gpu * 0x10:02x}:00.0"


def gpu_uuid(node: str, gpu: int) -> str:
    import hashlib

    digest = hashlib.sha256(f"{node}/{gpu}".encode()).hexdigest()
    return f"GPU-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def information(node: str, gpu: int, bus: str) -> str:
    # The fields of the real file that anything here reads (steps.gpu.pci), in the driver's layout.
    return (
        f"Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 0\nGPU UUID: \t {gpu_uuid(node, gpu)}\n"
        f"Video BIOS: \t 96.00.99.00.01\nBus Type: \t PCIe\nDMA Size: \t 52 bits\nBus Location: \t {bus}\n"
        f"Device Minor: \t {gpu}\nGPU Firmware: \t 570.00\nGPU Excluded:\t No\n"
    )


GPU_METADATA = "/var/lib/nvsentinel/gpu_metadata.json"
DRIVER_VERSION = "570.148.08"


def gpu_metadata(node: str, gpus: int, node_index: int) -> dict:
    """metadata-collector's file: `pci_address` lower-case `dddddddd:bb:dd.f` (nvsentinel.md §1.4)."""
    return {
        "driver_version": DRIVER_VERSION,
        "gpus": [{"gpu_id": gpu, "uuid": gpu_uuid(node, gpu), "pci_address": bus_id(node_index, gpu)} for gpu in range(gpus)],
        "nvswitches": [],
    }


def prepare_node_root(root: Path, spec: NodeSpec, node_index: int) -> None:
    """The node's directory: kernel-log FIFO, toggle directory, driver /proc tree and NVSentinel's GPU
    metadata (GPU nodes)."""
    node_path(root, TOGGLE_DIR).mkdir(parents=True, exist_ok=True)
    kmsg = node_path(root, KMSG)
    kmsg.parent.mkdir(parents=True, exist_ok=True)
    if not kmsg.exists():
        os.mkfifo(kmsg, 0o600)
    for gpu in range(spec.gpus):
        bus = bus_id(node_index, gpu)
        info = node_path(root, PROC) / "driver" / "nvidia" / "gpus" / bus / "information"
        info.parent.mkdir(parents=True, exist_ok=True)
        info.write_text(information(spec.name, gpu, bus))
    if spec.gpus and spec.gpu_metadata:
        metadata = node_path(root, GPU_METADATA)
        metadata.parent.mkdir(parents=True, exist_ok=True)
        metadata.write_text(json.dumps(gpu_metadata(spec.name, spec.gpus, node_index), indent=1) + "\n")


def node_object(spec: NodeSpec) -> dict:
    labels = {"kubernetes.io/hostname": spec.name, "kubernetes.io/os": "linux"}
    if spec.is_gpu:
        labels |= {GPU_PRESENT_LABEL: "true", nvsentinel.DRIVER_INSTALLED_LABEL: "true", "nvsentinel.dgxc.nvidia.com/kata.enabled": "false"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": spec.name, "labels": labels}, "spec": pod_cidr_spec(spec)}


def pod_cidr_spec(spec: NodeSpec) -> dict:
    return {"podCIDR": spec.pod_cidr, "podCIDRs": [spec.pod_cidr]} if spec.pod_cidr else {}


def node_status(spec: NodeSpec, now: str, kubelet_port: int | None = None) -> dict:
    capacity = {"cpu": "16", "memory": "128Gi", "pods": "110"}
    if spec.is_gpu:
        capacity["nvidia.com/gpu"] = str(spec.gpus)
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet simulator is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": spec.name}],
        # Where the API server reaches the node's kubelet for pods/log (the kubelet log simulator).
        **({"daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}} if kubelet_port else {}),
    }


def create_nodes(kube: Kube, specs: list[NodeSpec], now: str, kubelet_port: int | None = None) -> None:
    """Creates each Node (kept if it exists) and sets its status as a kubelet registering would.

    The API server's TaintNodesByCondition admission taints a new node `node.kubernetes.io/not-ready`;
    the node lifecycle controller (controller-manager, absent here) lifts it once the node is Ready,
    so that is done here too. A node made by an older lab without a pod CIDR gets one (the API server
    lets an unset podCIDR be set once)."""
    for spec in specs:
        ref = Ref("v1", "nodes", None, spec.name)
        existing = kube.get_or_none(ref)
        if existing is None:
            kube.create(Ref("v1", "nodes", None, ""), node_object(spec))
        elif spec.pod_cidr and not o.spec(existing).get("podCIDR"):
            kube.merge_patch(ref, {"spec": pod_cidr_spec(spec)})
        kube.request(
            "PATCH",
            f"/api/v1/nodes/{spec.name}/status",
            body={"status": node_status(spec, now, kubelet_port)},
            content_type="application/merge-patch+json",
        )
        taints = o.spec(kube.get(ref)).get("taints") or []
        kept = [t for t in taints if t.get("key") != NOT_READY_TAINT]
        if kept != taints:
            kube.merge_patch(ref, {"spec": {"taints": kept or None}})
