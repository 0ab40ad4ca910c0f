"""The XID catalogue: faultflow's single source of truth for every NVIDIA XID 1–172.

Each entry joins two kinds of fact:

* how NVSentinel's workbook classifies the XID (mnemonic, description, NVIDIA's immediate resolution
  bucket and the action NVSentinel maps it to) — imported at build time from NVSentinel's catalogue
  into `data/nvsentinel_xids.json` by `steps.gpu.catalogue_import`, which names the NVSentinel
  version it reflects;
* what the failure looks like on a real machine, which is ours: the text the driver prints in the
  kernel log (after `name=<proc>, `, or right after the code for the lines the driver prints without a
  process), and the CUDA error an application gets — from the driver API
  (`CUresult`) and the runtime API (`cudaError_t`) on ordinary calls, and on initialisation
  (`cuInit`, device count) in a process that starts while the fault lasts;
* what NVML consumers (the device plugin, DCGM, the DRA driver, nvidia-smi) see: the events
  `nvmlEventSetWait` delivers, whether the device is lost (`NVML_ERROR_GPU_IS_LOST`), and the ECC
  state (uncorrectable counters, retired pages, remapped rows).

NVSentinel takes the action from the *line* for some XIDs (shared/research/nvsentinel-2026-12.md §2):
154 from the text in its last parentheses, 144–150 from the NVLink-5 decode of the line's error code
and registers. `nvsentinel_action` is the action NVSentinel assigns to the line we write by default on
a node whose GPU is in NVSentinel's `gpu_metadata.json`; the per-node expectation (metadata, driver
version, 154's recovery text) is `steps.gpu.expectation`.

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
    nvsentinel_action: str  # NVSentinel recommendedAction for our default line (GPU in gpu_metadata.json)
    fatal: bool  # NVSentinel cordons and drains the node (action != NONE)
    severity: str
    driver_text: str
    effect: AppEffect
    nvml: NvmlEffect
    workbook_action: str = ""  # the action NVSentinel's workbook row maps to, before the line is read
    action_rule: str = "workbook"  # where NVSentinel takes the action from (ACTION_RULES)
    note: str = ""

    @property
    def metadata_dependent(self) -> bool:
        """NVSentinel turns COMPONENT_RESET into RESTART_VM when the GPU is not in gpu_metadata.json."""
        return self.nvsentinel_action == "COMPONENT_RESET" or (
            self.number == 154 and any(r.action == "COMPONENT_RESET" for r in RECOVERY.values())
        )

    @property
    def with_process(self) -> bool:
        """The driver prints `pid=…, name=…` on this XID's line (not on 154 or the NVLink-5 decode lines)."""
        return self.number not in NO_PROCESS_XIDS

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
            "workbook_action": self.workbook_action,
            "action_rule": self.action_rule,
            "action_rule_text": ACTION_RULES[self.action_rule],
            "metadata_dependent": self.metadata_dependent,
            "without_gpu_metadata": without_metadata(self.nvsentinel_action),
            "note": self.note,
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
}

# --- where NVSentinel takes the action from (nvsentinel-2026-12.md §2, nvsentinel.md §1.5) ------------
ACTION_RULES = {
    "workbook": "the workbook row's immediate bucket (XIDs NVSentinel's workbook lacks: CONTACT_SUPPORT)",
    "recovery-text": "the text in the line's last parentheses: None -> NONE, GPU Reset Required or Drain and Reset -> "
    "COMPONENT_RESET, Node Reboot Required -> RESTART_BM, anything else -> CONTACT_SUPPORT",
    "nvl5-decode": "the NVLink-5 decode of the line's error code, IntrInfo and ErrorStatus (sheet 'Xid 144-150 Decode', "
    "IntrInfo patterns V1 before driver R575, V2 from R575); no matching rule -> NONE; a line not in "
    "the NVL5 shape -> the workbook row (CONTACT_SUPPORT)",
}
METADATA_RULE = "COMPONENT_RESET becomes RESTART_VM when the GPU's UUID does not come from the node's /var/lib/nvsentinel/gpu_metadata.json"


def without_metadata(action: str) -> str:
    return "RESTART_VM" if action == "COMPONENT_RESET" else action


@dataclass(frozen=True)
class Recovery:
    code: str  # the driver's recovery-action value
    text: str  # what it prints in parentheses
    action: str  # what NVSentinel makes of the text


# XID 154: "GPU recovery action changed from <old> (<text>) to <new> (<text>)"; the values and texts
# are the catalogue's trigger note (None, GPU Reset Required, Node Reboot Required, Drain P2P, Drain and Reset).
RECOVERY = {
    "none": Recovery("0x0", "None", "NONE"),
    "gpu-reset": Recovery("0x1", "GPU Reset Required", "COMPONENT_RESET"),
    "node-reboot": Recovery("0x2", "Node Reboot Required", "RESTART_BM"),
    "drain-p2p": Recovery("0x3", "Drain P2P", "CONTACT_SUPPORT"),
    "drain-and-reset": Recovery("0x4", "Drain and Reset", "COMPONENT_RESET"),
}
DEFAULT_RECOVERY = "gpu-reset"


def recovery_text(variant: str) -> str:
    new = RECOVERY[variant]
    old = RECOVERY["gpu-reset"] if variant == "none" else RECOVERY["none"]
    return f"GPU recovery action changed from {old.code} ({old.text}) to {new.code} ({new.text})"


@dataclass(frozen=True)
class Nvl5Line:
    """`<SUBCODE> <Fatal|Nonfatal> <XCn> i0 Link <n> (<IntrInfo> <ErrorStatus> 0x… ×4)`, as the driver prints it."""

    subcode: str
    severity: str
    xc: str
    link: int
    intr_info: int
    error_status: int
    action: str | None  # NVSentinel's decode of this line; None: no rule known to us (NVSentinel: NONE if none matches)
    source: str

    def text(self) -> str:
        zeros = " ".join(["0x00000000"] * 4)
        return (
            f"{self.subcode} {self.severity} {self.xc} i0 Link {self.link:02d} (0x{self.intr_info:08x} 0x{self.error_status:08x} {zeros})"
        )


_CSV_TEST = "NVSentinel pkg/xid/parser/csv_test.go"
_UNVERIFIED = "no decode example known to faultflow: all-zero IntrInfo/ErrorStatus, expected to match no rule"
# Per XID and IntrInfo pattern version ("v1": driver < R575 or unknown, "v2": R575+): the line we write.
NVL5_LINES: dict[int, dict[str, Nvl5Line]] = {
    145: {
        "v1": Nvl5Line("RLW_REMAP", "Nonfatal", "XC1", 10, 0x00000082, 0x00000040, "COMPONENT_RESET", _CSV_TEST),
        "v2": Nvl5Line("RLW_REMAP", "Nonfatal", "XC1", 10, 0x00000004, 0x00000040, "COMPONENT_RESET", _CSV_TEST),
    },
    149: {
        "v1": Nvl5Line("NETIR_LINK_EVT", "Fatal", "XC0", 9, 0x025525C6, 0, "COMPONENT_RESET", _CSV_TEST),
        "v2": Nvl5Line("NETIR_LINK_EVT", "Fatal", "XC0", 9, 0x025525C6, 0, None, _UNVERIFIED),
    },
    **{
        xid: {v: Nvl5Line(f"{unit}_ERR", "Nonfatal", "XC0", 0, 0, 0, None, _UNVERIFIED) for v in ("v1", "v2")}
        for xid, unit in ((144, "SAW"), (146, "TLW"), (147, "TREX"), (148, "NVLPW_CTRL"), (150, "MSE"))
    },
}
NVL5_XIDS = frozenset(NVL5_LINES)
NO_PROCESS_XIDS = frozenset({*NVL5_XIDS, 154})


def decode_version(driver_version: str) -> str:
    """NVSentinel's choice of IntrInfo patterns: V2 from driver R575, V1 before it or when unknown."""
    head = (driver_version or "").split(".", 1)[0]
    return "v2" if head.isdigit() and int(head) >= 575 else "v1"


def line_text(number: int, recovery: str = DEFAULT_RECOVERY, driver_version: str = "") -> str:
    """What the driver prints for this XID after the code (and after `pid=…, name=…` where it prints them)."""
    if number == 154:
        return recovery_text(recovery)
    if number in NVL5_LINES:
        return NVL5_LINES[number][decode_version(driver_version)].text()
    return lookup(number).driver_text


# XID 79's second driver line (nvsentinel.md §5, pop-os/pop#3363), printed right after the XID line.
FALLEN_OFF_TEXT = "GPU has fallen off the bus."

NOTES = {
    45: "Action changed upstream: NVSentinel PR #1629 (merged 2026-08-19) makes XID 45 non-fatal (NONE); "
    "releases with it do not cordon. This catalogue reflects the snapshot named in `nvsentinel`.",
    79: "The driver prints a second line, `NVRM: GPU <bdf>: GPU has fallen off the bus.`; faultflow writes both, in "
    "that order. NVSentinel's separate GPU-fallen-off check does not fire on it (other wording; and it is "
    "suppressed within 5 min of an XID on the same PCI).",
    154: "The action follows the recovery text the line ends with; choose it with inject-xid --recovery-action.",
    162: "NVSentinel's default cancellations also send a healthy event for XID 163 on the same GPU.",
    163: "Cleared by a later XID 162 on the same GPU (NVSentinel's default cancellations).",
}

# Where the real failure's error is known, it is named here with the reason; the rest follow the
# bucket rules in `_default_effect`. The reference shim got several of these wrong (43 → 6, 74 → 217).
EFFECTS = {
    13: AppEffect(700, 0, "graphics exception from an out-of-range access: the kernel faults with an illegal address"),
    31: AppEffect(700, 0, "MMU fault: the faulting context gets an illegal address error"),
    43: AppEffect(
        702, 0, "the channel was reset because work stopped making progress: launch timeout (702 on both APIs; 6 is a legacy value)"
    ),
    48: AppEffect(214, 214, "double-bit ECC error reported to the application as uncorrectable ECC until the GPU is reset"),
    74: AppEffect(
        220,
        220,
        "uncorrectable NVLink error: CUDA reports it as such (the reference's 217 'peer access unsupported' is a configuration error, not a link failure)",
    ),
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
        workbook = row["workbook_action"]
        if number == 154:
            action, rule, text = RECOVERY[DEFAULT_RECOVERY].action, "recovery-text", recovery_text(DEFAULT_RECOVERY)
        elif number in NVL5_LINES:
            line = NVL5_LINES[number]["v1"]
            action, rule, text = line.action or "NONE", "nvl5-decode", line.text()
        else:
            action, rule = workbook, "workbook"
            text = DRIVER_TEXT.get(number, _readable_name(description, row["mnemonic"]))
        entries[number] = Xid(
            number=number,
            mnemonic=row["mnemonic"],
            description=description,
            immediate_bucket=bucket,
            nvsentinel_action=action,
            fatal=action != "NONE",
            severity=_severity(action, bucket),
            driver_text=text,
            effect=EFFECTS.get(number) or _default_effect(bucket),
            nvml=nvml_effect(number),
            workbook_action=workbook,
            action_rule=rule,
            note=NOTES.get(number, ""),
        )
    return dict(sorted(entries.items()))


@lru_cache(maxsize=1)
def nvsentinel_source() -> dict:
    """The NVSentinel version the imported catalogue reflects (written by steps.gpu.catalogue_import)."""
    raw = json.loads(resources.files("steps.gpu").joinpath("data/nvsentinel_xids.json").read_text())
    source: dict = raw["nvsentinel"]
    return source


def lookup(number: int) -> Xid:
    """The catalogue entry for an XID; KeyError with a readable message for anything else."""
    try:
        return catalogue()[number]
    except KeyError:
        raise KeyError(f"unknown XID {number}: the catalogue covers {XID_RANGE.start}-{XID_RANGE.stop - 1}") from None
