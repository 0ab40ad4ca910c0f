"""NVSentinel's side of the contract, as facts to honour (shared/research/nvsentinel.md §1.3, §3, §7).

Kept in one place so the steps, the lab's NVSentinel simulator and the tests all read the same
strings: a renamed annotation upstream is then a one-line change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steps.kube import objects as o

# syslog-health-monitor pkg/patterns/xid.go, verbatim. Go's RE2 `\d` is ASCII-only, hence re.ASCII.
XID_PATTERN = re.compile(
    r"NVRM: Xid \(PCI:([0-9a-fA-F:.]+)\): (\d+)(?:, pid=(\d+))?(?:, name=([^,]+))?(?:, Ch ([0-9a-fA-F]+))?",
    re.ASCII,
)

# fault-quarantine's node markings (§3.2).
CORDONED_ANNOTATION = "quarantineHealthEventIsCordoned"
EVENT_ANNOTATION = "quarantineHealthEvent"
PRE_EXISTING_ANNOTATION = "quarantineHealthEventCordonPreExisting"
STATE_LABEL = "dgxc.nvidia.com/nvsentinel-state"
CORDON_BY_LABEL = "k8saas.nvidia.com/cordon-by"
XID_CONDITION = "SysLogsXIDError"

# Circuit breaker ConfigMap (§3.2): data.status CLOSED | TRIPPED.
CIRCUIT_BREAKER_CONFIGMAP = "circuit-breaker"
CIRCUIT_BREAKER_TRIPPED = "TRIPPED"

# syslog-health-monitor DaemonSet pods (§1.1).
SHM_POD_LABEL = "app.kubernetes.io/name=syslog-health-monitor"
DRIVER_INSTALLED_LABEL = "nvsentinel.dgxc.nvidia.com/driver.installed"


@dataclass(frozen=True)
class XidMatch:
    pci: str
    xid: int
    pid: int | None
    name: str | None


def match_xid(message: str) -> XidMatch | None:
    """What syslog-health-monitor extracts from a journal MESSAGE (unanchored search, as Go's FindStringSubmatch)."""
    found = XID_PATTERN.search(message)
    if found is None:
        return None
    return XidMatch(
        pci=found.group(1),
        xid=int(found.group(2)),
        pid=int(found.group(3)) if found.group(3) else None,
        name=found.group(4),
    )


def is_quarantined(node: Mapping[str, Any]) -> bool:
    """NVSentinel's quarantine as the design defines it: cordoned + cordon annotation + state label."""
    return o.unschedulable(node) and o.annotations_of(node).get(CORDONED_ANNOTATION) == "True" and STATE_LABEL in o.labels(node)


def xid_condition_set(node: Mapping[str, Any]) -> bool:
    """NVSentinel's platform connector reported the syslog monitor's XID finding on the node
    (condition SysLogsXIDError=True, §3.1) — its detection, before or alongside the quarantine."""
    return o.condition_true(node, XID_CONDITION)


def circuit_breaker_tripped(configmap_data: Mapping[str, str] | None) -> bool:
    return (configmap_data or {}).get("status", "").strip().upper() == CIRCUIT_BREAKER_TRIPPED


# --- the rest of NVSentinel's markings and messages (nvsentinel.md §1.3, §3.1–3.5) ------------------
# syslog-health-monitor pkg/xid/types.go: the GPU-reset acknowledgement that clears a GPU's events.
GPU_RESET_PATTERN = re.compile(r"GPU reset executed: (GPU-[0-9a-fA-F-]+), success: (true|false)", re.ASCII)
CORDON_REASON_LABEL = "k8saas.nvidia.com/cordon-reason"
CORDON_TIMESTAMP_LABEL = "k8saas.nvidia.com/cordon-timestamp"
UNCORDON_BY_LABEL = "k8saas.nvidia.com/uncordon-by"
UNCORDON_TIMESTAMP_LABEL = "k8saas.nvidia.com/uncordon-timestamp"
MANAGED_LABEL = "k8saas.nvidia.com/ManagedByNVSentinel"
# Opt-out (nvsentinel-2026-12.md §3): events from a node labelled managed=false are stored only.
OPT_OUT_LABEL = "nvsentinel.dgxc.nvidia.com/managed"
# fault-quarantine's configuration (nvsentinel.md §3.2): ConfigMap `fault-quarantine`, key config.toml.
FAULT_QUARANTINE_CONFIGMAP = "fault-quarantine"
FAULT_QUARANTINE_KEY = "config.toml"
# platform-connectors' deduplication window for SysLogsXIDError (PR #1283, nvsentinel-2026-12.md §3).
DEDUP_WINDOW_S = 180.0
# HealthEvent.recommendedAction as the proto enum's integer (FQ's annotation is the proto struct as JSON).
ACTION_CODES = {"NONE": 0, "COMPONENT_RESET": 2, "CONTACT_SUPPORT": 5, "RESTART_VM": 15, "RESTART_BM": 24, "REPLACE_VM": 25}
