"""The XID catalogue: faultflow's single source of truth for every NVIDIA XID 1–172.

Each entry joins two kinds of fact:

* how NVSentinel classifies the XID (mnemonic, description, NVIDIA's immediate resolution bucket,
  NVSentinel's recommended action and whether it is fatal, i.e. cordons the node) — imported at build
  time from NVSentinel's catalogue into `data/nvsentinel_xids.json` by `steps.gpu.catalogue_import`;
* what the failure looks like on a real machine, which is ours: the text the driver prints after
  `name=<proc>, ` in the kernel log, and the CUDA error an application gets — from the driver API
  (`CUresult`) and the runtime API (`cudaError_t`) on ordinary calls, and on initialisation
  (`cuInit`, device count) in a process that starts while the fault lasts;
* what NVML consumers (the device plugin, DCGM, the DRA driver, nvidia-smi) see: the events
  `nvmlEventSetWait` delivers, whether the device is lost (`NVML_ERROR_GPU_IS_LOST`), and the ECC
  state (uncorrectable counters, retired pages, remapped rows).

The shim's C table (`shim/xid_table.h`) is generated from this module by `steps.gpu.shim_header`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

SEED_XIDS = (43, 48, 74, 79, 94, 95, 119, 120)
XID_RANGE = range(1, 173)


@dataclass(frozen=True)
class CudaError:
    code: int
    driver_name: str  # CUresult enumerator
    runtime_name: str  # cudaError_t enumerator


# Only the errors the catalogue uses. Driver and runtime share these numeric values (CUDA 10+ headers).
CUDA_ERRORS = {
    e.code: e
    for e in (
        CudaError(0, "CUDA_SUCCESS", "cudaSuccess"),
        CudaError(100, "CUDA_ERROR_NO_DEVICE", "cudaErrorNoDevice"),
        CudaError(214, "CUDA_ERROR_ECC_UNCORRECTABLE", "cudaErrorECCUncorrectable"),
        CudaError(220, "CUDA_ERROR_NVLINK_UNCORRECTABLE", "cudaErrorNvlinkUncorrectable"),
        CudaError(700, "CUDA_ERROR_ILLEGAL_ADDRESS", "cudaErrorIllegalAddress"),
        CudaError(702, "CUDA_ERROR_LAUNCH_TIMEOUT", "cudaErrorLaunchTimeout"),
        CudaError(719, "CUDA_ERROR_LAUNCH_FAILED", "cudaErrorLaunchFailure"),
        CudaError(999, "CUDA_ERROR_UNKNOWN", "cudaErrorUnknown"),
    )
}


@dataclass(frozen=True)
class AppEffect:
    """What an application on the faulted GPU sees, and why we chose it."""

    call_error: int  # error of per-call APIs (alloc, copy, launch, sync) while the fault lasts
    init_error: int  # error of cuInit / device count in a process started during the fault (0: starts)
    why: str


# NVML event types (nvml.h `nvmlEventType*`): the ones an XID raises.
NVML_EVENT_TYPES = {"XidCriticalError": 0x8, "DoubleBitEccError": 0x2, "SingleBitEccError": 0x1}

# XIDs after which the GPU is gone for NVML: every call on the device returns NVML_ERROR_GPU_IS_LOST.
# 79 is "fallen off the bus"; the other fatal XIDs leave a device NVML can still query (reset needed).
GPU_LOST_XIDS = frozenset({79})

# ECC XIDs and the state the driver reports afterwards. uncorrectable: the volatile and aggregate
# uncorrected ECC counters rise by one. remap: "pending" (a row is remapped, applied at the next reset:
# remapped rows' uncorrectable count +1 and isPending), "failure" (the remapper ran out: failureOccurred).
# retire_page: a page is retired for a double-bit error and retirement is pending (GPUs before Ampere;
# on row-remapping GPUs the driver answers NOT_SUPPORTED there, and so do we).
ECC_EFFECTS = {
    48: ("double-bit ECC error", True, "pending", True),
    63: ("row remapping / page retirement recorded", False, "pending", True),
    64: ("row remapping / page retirement failed", False, "failure", False),
    94: ("contained uncorrectable ECC error", True, "pending", False),
    95: ("uncontained uncorrectable ECC error", True, "pending", False),
}
DOUBLE_BIT_EVENT_XIDS = frozenset({48, 94, 95})
SINGLE_BIT_EVENT_XIDS = frozenset({92})


@dataclass(frozen=True)
class NvmlEffect:
    """What NVML shows for an XID on the targeted device while the injection lasts."""

    events: tuple[str, ...]  # delivered once per injection by nvmlEventSetWait, in this order
    gpu_lost: bool
    uncorrectable_ecc: bool
    remap: str  # "", "pending" or "failure"
    retire_page: bool

    @property
    def event_mask(self) -> int:
        mask = 0
        for name in self.events:
            mask |= NVML_EVENT_TYPES[name]
        return mask

    def summary(self) -> str:
        parts = [*self.events]
        if self.gpu_lost:
            parts.append("GPU_IS_LOST")
        if self.uncorrectable_ecc:
            parts.append("ECC+1")
        if self.remap:
            parts.append(f"remap {self.remap}")
        if self.retire_page:
            parts.append("page retired")
        return ", ".join(parts)


def nvml_effect(number: int) -> NvmlEffect:
    # Every XID the driver reports reaches NVML as an XidCriticalError event carrying its number.
    events = ["XidCriticalError"]
    if number in DOUBLE_BIT_EVENT_XIDS:
        events.append("DoubleBitEccError")
    if number in SINGLE_BIT_EVENT_XIDS:
        events.append("SingleBitEccError")
    _, uncorrectable, remap, retire = ECC_EFFECTS.get(number, ("", False, "", False))
    return NvmlEffect(tuple(events), number in GPU_LOST_XIDS, uncorrectable, remap, retire)


@dataclass(frozen=True)
class Xid:
    number: int
    mnemonic: str
    description: str
    immediate_bucket: str  # NVIDIA's "Resolution Bucket (Immediate Action)"
    nvsentinel_action: str  # NVSentinel recommendedAction (NONE, COMPONENT_RESET, RESTART_BM, …)
    fatal: bool  # NVSentinel cordons and drains the node
    severity: str
    driver_text: str
    effect: AppEffect
    nvml: NvmlEffect

    @property
    def seed(self) -> bool:
        return self.number in SEED_XIDS

    @property
    def name(self) -> str:
        return _readable_name(self.description, self.mnemonic)

    @property
    def call_error(self) -> CudaError:
        return CUDA_ERRORS[self.effect.call_error]

    @property
    def init_error(self) -> CudaError:
        return CUDA_ERRORS[self.effect.init_error]

    def as_dict(self) -> dict:
        return {
            "xid": self.number,
            "name": self.name,
            "mnemonic": self.mnemonic,
            "severity": self.severity,
            "nvsentinel_action": self.nvsentinel_action,
            "fatal": self.fatal,
            "immediate_bucket": self.immediate_bucket,
            "driver_text": self.driver_text,
            "cuda_driver_error": self.call_error.driver_name,
            "cuda_runtime_error": self.call_error.runtime_name,
            "cuda_error_code": self.effect.call_error,
            "cuda_init_error_code": self.effect.init_error,
            "why": self.effect.why,
            "nvml_events": list(self.nvml.events),
            "nvml_gpu_lost": self.nvml.gpu_lost,
            "nvml_uncorrectable_ecc": self.nvml.uncorrectable_ecc,
            "nvml_remap": self.nvml.remap,
            "nvml_retire_page": self.nvml.retire_page,
            "seed": self.seed,
        }


# The text the real driver prints after "pid=…, name=…, " (nvsentinel.md §5, open-gpu-kernel-modules).
DRIVER_TEXT = {
    13: "Graphics Exception: ChID 000c, Class 0000cbc0, Offset 00000000, Data 00000000",
    31: "MMU Fault: ENGINE GRAPHICS GPCCLIENT_T1_0 faulted @ 0x7f2b_80000000. Fault is of type FAULT_PDE ACCESS_TYPE_READ",
    43: "Ch 00000008",
    48: "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at physAddr 0x7fdf0de80 partition 5, subpartition 1",
    74: "NVLink: fatal error detected on link 14(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)",
    79: "GPU has fallen off the bus.",
    94: "Contained: CE User Channel (0x9). RST: No, D-RST: No",
    95: "Uncontained: LTC TAG (0x2, 0x1). RST: Yes, D-RST: No",
    119: "Timeout after 6s of waiting for RPC response from GPU0 GSP! Expected function 76 (GSP_RM_CONTROL) (0x20802a02 0x8).",
    120: "GSP task exception: load access fault",
    # NVSentinel takes 154's action from the text in the last parentheses.
    154: "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)",
}

# Where the real failure's error is known, it is named here with the reason; the rest follow the
# bucket rules in `_default_effect`. The reference shim got several of these wrong (43 → 6, 74 → 217).
EFFECTS = {
    13: AppEffect(700, 0, "graphics exception from an out-of-range access: the kernel faults with an illegal address"),
    31: AppEffect(700, 0, "MMU fault: the faulting context gets an illegal address error"),
    43: AppEffect(702, 0, "the channel was reset because work stopped making progress: launch timeout (702 on both APIs; 6 is a legacy value)"),
    48: AppEffect(214, 214, "double-bit ECC error reported to the application as uncorrectable ECC until the GPU is reset"),
    74: AppEffect(220, 220, "uncorrectable NVLink error: CUDA reports it as such (the reference's 217 'peer access unsupported' is a configuration error, not a link failure)"),
    79: AppEffect(999, 100, "the GPU is lost: calls in a running context fail with an unknown error, and a new process finds no device"),
    94: AppEffect(214, 0, "contained ECC error: only the affected context sees uncorrectable ECC; a restarted application runs"),
    95: AppEffect(214, 214, "uncontained ECC error: every context on the GPU sees uncorrectable ECC until the GPU is reset"),
    119: AppEffect(999, 999, "GSP firmware stopped answering RPCs: the driver fails calls with an unknown error until reset"),
    120: AppEffect(999, 999, "GSP firmware error: the driver fails calls with an unknown error until reset"),
}


def _default_effect(bucket: str) -> AppEffect:
    if bucket == "IGNORE":
        return AppEffect(0, 0, "informational: the application keeps running")
    if bucket == "RESTART_APP":
        return AppEffect(719, 0, "application-level fault: the channel is torn down (launch failure); a restarted application runs")
    return AppEffect(999, 999, "GPU-level fault needing reset or support: the driver fails calls with an unknown error")


def _readable_name(description: str, mnemonic: str) -> str:
    # NVIDIA's catalogue describes retired codes as "Unused"; their mnemonic says more.
    return description if description != "Unused" else mnemonic


def _severity(action: str, bucket: str) -> str:
    if action == "NONE":
        return "info" if bucket == "IGNORE" else "warning"
    if action == "COMPONENT_RESET":
        return "high"
    return "critical"


@lru_cache(maxsize=1)
def catalogue() -> dict[int, Xid]:
    """Every XID 1–172, keyed by number."""
    raw = json.loads(resources.files("steps.gpu").joinpath("data/nvsentinel_xids.json").read_text())
    entries = {}
    for key, row in raw["xids"].items():
        number = int(key)
        bucket = row["immediate_bucket"]
        description = row["description"]
        entries[number] = Xid(
            number=number,
            mnemonic=row["mnemonic"],
            description=description,
            immediate_bucket=bucket,
            nvsentinel_action=row["nvsentinel_action"],
            fatal=row["fatal"],
            severity=_severity(row["nvsentinel_action"], bucket),
            driver_text=DRIVER_TEXT.get(number, _readable_name(description, row["mnemonic"])),
            effect=EFFECTS.get(number) or _default_effect(bucket),
            nvml=nvml_effect(number),
        )
    return dict(sorted(entries.items()))


def lookup(number: int) -> Xid:
    """The catalogue entry for an XID; KeyError with a readable message for anything else."""
    try:
        return catalogue()[number]
    except KeyError:
        raise KeyError(f"unknown XID {number}: the catalogue covers {XID_RANGE.start}-{XID_RANGE.stop - 1}") from None
