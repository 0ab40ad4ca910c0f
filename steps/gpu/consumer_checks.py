"""What the node's NVML consumers do about a GPU failure, as the API server shows it.

NVSentinel reads the kernel log; the consumers below read NVML (libfaultflow_nvml.so, preloaded into
them by `inject-cuda-shim --nvml-consumers`) and answer on their own objects:

* `allocatable` — the NVIDIA device plugin marks the device Unhealthy on an `XidCriticalError`
  event it does not ignore (13, 31, 43, 45, 68, 109); the kubelet then reports it in the node's
  capacity but not in its allocatable `nvidia.com/gpu`. The node status carries no time for this:
  the time is when the watch saw it (an upper bound), `at_start` says when it was already so;
* `dra-taint` — the NVIDIA DRA driver taints the device in its ResourceSlice (resource.k8s.io/v1,
  device taints are GA in Kubernetes 1.37) with `gpu.nvidia.com/xid` or `gpu.nvidia.com/gpu-lost`;
  the API server stamps `timeAdded`, which dates it;
* `condition:<Type>` — a node condition (GKE's `XidCriticalError`, for one) turning True; its
  `lastTransitionTime` dates it.

A sighting dated before the fault's second is an earlier incident, never this fault's answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from steps.errors import BadInput
from steps.gpu.quarantine_transition import fault_second_ms, parse_time_ms

GPU_RESOURCE = "nvidia.com/gpu"
DRA_TAINT_KEYS = ("gpu.nvidia.com/xid", "gpu.nvidia.com/gpu-lost")
RESOURCE_API = "resource.k8s.io/v1"
# k8s-device-plugin's default ignore list (internal/rm/health.go): these XIDs never make a device Unhealthy.
DEVICE_PLUGIN_IGNORED_XIDS = frozenset({13, 31, 43, 45, 68, 109})
_CONDITION_TYPE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]{0,62}[A-Za-z0-9])?$")


class ConsumerKind(StrEnum):
    ALLOCATABLE = "allocatable"
    DRA_TAINT = "dra-taint"
    CONDITION = "condition"


@dataclass(frozen=True)
class ConsumerCheck:
    kind: ConsumerKind
    condition_type: str | None = None

    @property
    def name(self) -> str:
        return f"condition:{self.condition_type}" if self.kind is ConsumerKind.CONDITION else self.kind.value

    @property
    def consumer(self) -> str:
        """Who answers with it, for the events and the report."""
        if self.kind is ConsumerKind.ALLOCATABLE:
            return "device plugin"
        if self.kind is ConsumerKind.DRA_TAINT:
            return "DRA driver"
        return f"node condition {self.condition_type}"

    @property
    def check_name(self) -> str:
        return "consumer_" + re.sub(r"[^a-z0-9]+", "_", self.name.lower()).strip("_")

    @property
    def on_node(self) -> bool:
        return self.kind is not ConsumerKind.DRA_TAINT


def parse(text: str) -> ConsumerCheck:
    """`allocatable`, `dra-taint` or `condition:<Type>`; BadInput for anything else."""
    if text == ConsumerKind.ALLOCATABLE.value:
        return ConsumerCheck(ConsumerKind.ALLOCATABLE)
    if text == ConsumerKind.DRA_TAINT.value:
        return ConsumerCheck(ConsumerKind.DRA_TAINT)
    prefix = ConsumerKind.CONDITION.value + ":"
    if text.startswith(prefix) and _CONDITION_TYPE.match(text[len(prefix) :]):
        return ConsumerCheck(ConsumerKind.CONDITION, text[len(prefix) :])
    raise BadInput(f"{text!r} is not a consumer check (allocatable, dra-taint or condition:<Type>)")


@dataclass(frozen=True)
class Sighting:
    check: ConsumerCheck
    at: float  # unix seconds: the object's own time where it has one, else when the watch saw it
    evidence: str
    at_start: bool = False  # already so when the watch began (allocatable: undatable)


def _quantity(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def node_sighting(check: ConsumerCheck, node: Mapping[str, Any], since_ms: int | None, first: bool) -> Sighting | None:
    """The node-level answer of `check` in this state of the node, if it shows one."""
    status = node.get("status") or {}
    if check.kind is ConsumerKind.ALLOCATABLE:
        capacity = _quantity((status.get("capacity") or {}).get(GPU_RESOURCE))
        allocatable = _quantity((status.get("allocatable") or {}).get(GPU_RESOURCE))
        if capacity is None or allocatable is None or allocatable >= capacity:
            return None
        return Sighting(check, time.time(), f"allocatable {GPU_RESOURCE} {allocatable} of {capacity}", at_start=first)
    for condition in status.get("conditions") or []:
        if condition.get("type") != check.condition_type or condition.get("status") != "True":
            continue
        at_ms = parse_time_ms(condition.get("lastTransitionTime"))
        if since_ms is not None and (at_ms is None or at_ms < fault_second_ms(since_ms)):
            return None  # set before the fault: an earlier incident
        reason = condition.get("reason") or ""
        return Sighting(
            check, (at_ms / 1000) if at_ms is not None else time.time(), f"condition {check.condition_type}=True {reason}".strip()
        )
    return None


def _device_matches(device: Mapping[str, Any], pci: str | None) -> bool:
    """The faulted GPU, where the driver publishes a PCI attribute; any device where it does not."""
    if pci is None:
        return True
    attributes = device.get("attributes") or {}
    values = [str((v or {}).get("string", "")).lower() for k, v in attributes.items() if "pci" in k.lower() and isinstance(v, dict)]
    return not values or any(pci in v for v in values)


def dra_sighting(
    check: ConsumerCheck, slices: Iterable[Mapping[str, Any]], since_ms: int | None, pci: str | None = None
) -> Sighting | None:
    """The first GPU-failure taint on the node's devices added at/after the fault."""
    found: list[Sighting] = []
    for item in slices:
        for device in (item.get("spec") or {}).get("devices") or []:
            if not _device_matches(device, pci):
                continue
            for taint in device.get("taints") or []:
                if taint.get("key") not in DRA_TAINT_KEYS:
                    continue
                at_ms = parse_time_ms(taint.get("timeAdded"))
                if since_ms is not None and (at_ms is None or at_ms < fault_second_ms(since_ms)):
                    continue
                name = (item.get("metadata") or {}).get("name")
                evidence = f"ResourceSlice {name} device {device.get('name')}: taint {taint['key']}={taint.get('value', '')}:{taint.get('effect', '')}"
                found.append(Sighting(check, (at_ms / 1000) if at_ms is not None else time.time(), evidence))
    return min(found, key=lambda s: s.at) if found else None
