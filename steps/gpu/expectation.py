"""What NVSentinel will do with the line we write, on this node: the expected action and why.

The catalogue (`steps.gpu.xids`) says what NVSentinel makes of our default line on a node whose GPU
is in NVSentinel's `gpu_metadata.json`. A node changes that (shared/research/nvsentinel-2026-12.md §2):

* the GPU's UUID missing from `/var/lib/nvsentinel/gpu_metadata.json` (no file, unreadable, or the PCI
  address not in it): COMPONENT_RESET becomes RESTART_VM;
* the driver version in that file picks the NVLink-5 decode patterns (V1 before R575, V2 from it);
* XID 154 takes its action from the recovery text the line ends with (`--recovery-action`).

inject-xid reads the file on the node (it has the host's paths) and reports the expectation; the
cordon watch and the report use it. The lab's NVSentinel simulator classifies the written line on
its own (lab/nvsentinel_simulator.py); tests hold the two equal for every XID.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from steps.gpu.pci import normalise_pci
from steps.gpu.xids import (
    ACTION_RULES,
    DEFAULT_RECOVERY,
    METADATA_RULE,
    NVL5_LINES,
    RECOVERY,
    decode_version,
    lookup,
    without_metadata,
)

GPU_METADATA_PATH = "/var/lib/nvsentinel/gpu_metadata.json"


@dataclass(frozen=True)
class GpuMetadata:
    """What NVSentinel reads from the node's gpu_metadata.json (nothing, when the file is not usable)."""

    found: bool
    driver_version: str = ""
    uuids: dict[str, str] = field(default_factory=dict)  # normalised PCI → GPU UUID
    problem: str = ""  # why the file gave nothing

    def has(self, pci: str) -> bool:
        return pci.lower() in self.uuids


def read_gpu_metadata(path: str | Path) -> GpuMetadata:
    file = Path(path)
    try:
        raw = json.loads(file.read_text())
    except FileNotFoundError:
        return GpuMetadata(False, problem=f"{file} does not exist")
    except (OSError, ValueError) as error:
        return GpuMetadata(False, problem=f"{file} is not readable JSON ({error.__class__.__name__})")
    if not isinstance(raw, dict):
        return GpuMetadata(False, problem=f"{file} is not a JSON object")
    uuids = {}
    for gpu in raw.get("gpus") or []:
        if isinstance(gpu, dict) and isinstance(gpu.get("pci_address"), str) and isinstance(gpu.get("uuid"), str):
            try:
                uuids[normalise_pci(gpu["pci_address"])] = gpu["uuid"]
            except ValueError:
                continue  # the reader skips an address it cannot parse
    found = raw.get("driver_version")
    version = found if isinstance(found, str) else ""
    return GpuMetadata(True, version, uuids)


@dataclass(frozen=True)
class Expectation:
    xid: int
    action: str  # NVSentinel's recommendedAction for the line on this node
    error_code: str  # the errorCode NVSentinel reports ("79", "145.RLW_REMAP")
    why: str
    verified: bool = True  # False: rests on a decode rule faultflow has no example of
    gpu_metadata: bool = True

    @property
    def fatal(self) -> bool:
        return self.action != "NONE"

    def as_fields(self) -> dict:
        return {
            "expected_action": self.action,
            "expected_error_code": self.error_code,
            "expected_why": self.why,
            "expected_verified": self.verified,
            "gpu_metadata": self.gpu_metadata,
        }


def expect(xid: int, gpu_metadata: bool = True, driver_version: str = "", recovery: str = DEFAULT_RECOVERY) -> Expectation:
    """NVSentinel's action for the line faultflow writes for `xid` (kmsg.xid_line with the same
    recovery and driver version) on a node with or without the GPU in gpu_metadata.json."""
    entry = lookup(xid)
    error_code, verified = str(xid), True
    if xid == 154:
        chosen = RECOVERY[recovery]
        action = chosen.action
        why = f"XID 154 line ends in ({chosen.text}); NVSentinel takes the action from {ACTION_RULES['recovery-text']}"
    elif xid in NVL5_LINES:
        version = decode_version(driver_version)
        line = NVL5_LINES[xid][version]
        error_code = f"{xid}.{line.subcode}"
        action = line.action or "NONE"
        verified = line.action is not None
        shown = driver_version or "unknown"
        why = (
            f"NVLink-5 line {error_code}, IntrInfo 0x{line.intr_info:08x} ErrorStatus 0x{line.error_status:08x}, "
            f"{version.upper()} patterns (driver {shown}): {action} ({line.source})"
        )
    else:
        action = entry.workbook_action
        why = f"NVSentinel's workbook: bucket {entry.immediate_bucket or '(empty)'} -> {action}"
    if not gpu_metadata and action == "COMPONENT_RESET":
        action = without_metadata(action)
        why += f"; the GPU is not in the node's gpu_metadata.json, so {METADATA_RULE.split(' when ')[0]}"
    if entry.note and xid in (45, 162, 163):
        why += f" [{entry.note}]"
    return Expectation(xid, action, error_code, why, verified, gpu_metadata)


def expect_on_node(xid: int, pci: str, metadata: GpuMetadata, recovery: str = DEFAULT_RECOVERY) -> Expectation:
    """The expectation for the GPU at `pci` given the node's gpu_metadata.json as inject-xid read it."""
    found = metadata.found and metadata.has(pci)
    result = expect(xid, found, metadata.driver_version if metadata.found else "", recovery)
    if found or "gpu_metadata.json" not in result.why:
        return result
    reason = metadata.problem or f"PCI {pci} is not in it"
    return Expectation(result.xid, result.action, result.error_code, f"{result.why} ({reason})", result.verified, False)
