"""Parameters of the GPU scenarios (gpu-fault, xid-only, cuda-only); the XID enum is the catalogue."""

from __future__ import annotations

from steps.gpu.xids import DEFAULT_RECOVERY, RECOVERY, catalogue
from workflows.declaration import Parameter
from workflows.stages.common import SHIM_IMAGE, STEPS_IMAGE

XID_ENUM = tuple(str(number) for number in sorted(catalogue()))

XID = Parameter("xid", "79", "XID to inject (NVIDIA catalogue 1-172; NVSentinel cordons for the fatal ones).", XID_ENUM)
GPU = Parameter("gpu", "0", "GPU index on the node (host device minor).")
FAULT_DURATION = Parameter("fault-duration", "30m", "The CUDA toggle switches itself off after this (at most 24h).")
# How the CUDA fault shows (`faultflow shim on` / inject-xid trigger options; steps.gpu.toggle.Triggers).
FAULT_MODE = Parameter(
    "fault-mode",
    "error",
    "error: the workers' CUDA calls fail with the XID's error; hang: their synchronize, launch and memcpy calls "
    "block until the toggle clears or hang-ms passes (XIDs 43, 109, 119 often look like this).",
    ("error", "hang"),
)
HANG_MS = Parameter("hang-ms", "0", "fault-mode hang: a blocked call fails with the XID's error after this many ms (0: blocks until off).")
AFTER_CALLS = Parameter("after-calls", "0", "The first N CUDA calls on the GPU of each worker process pass; the fault trips after them.")
PROBABILITY = Parameter(
    "probability",
    "1",
    "Each CUDA call on the GPU after that fails with this probability (0 < P <= 1): below 1, an intermittent fault.",
)
SEED = Parameter("seed", "0", "Seed of the per-process draw sequence for probability: the same seed replays the same failures.")
TRIGGER_PARAMETERS = (FAULT_MODE, HANG_MS, AFTER_CALLS, PROBABILITY, SEED)
EXPECT = Parameter(
    "expect",
    "auto",
    "What NVSentinel must do: cordon, annotate (its dry-run / monitor-only posture), none; "
    "auto: from NVSentinel's fault-quarantine configuration.",
    ("auto", "cordon", "annotate", "none"),
)
RECOVERY_ACTION = Parameter(
    "recovery-action",
    DEFAULT_RECOVERY,
    "XID 154 only: the recovery its line reports (NVSentinel takes the action from it).",
    tuple(RECOVERY),
)
DEDUP_WINDOW = Parameter(
    "dedup-window",
    "3m",
    "NVSentinel's dedup window (platform-connectors' suppressionWindow): a repeat of this XID on this GPU inside it "
    "is refused by preflight and reported as deduplicated; 0: NVSentinel runs without dedup.",
)
NVML_CONSUMERS = Parameter(
    "nvml-consumers",
    "",
    "DaemonSets reading NVML (device plugin, DCGM, DRA driver) to preload the NVML interposer into, as "
    "namespace/name,...; each must carry faultflow.dev/allow-faults=true itself. Empty: none.",
)
EXPECT_CONSUMERS = Parameter(
    "expect-consumers",
    "",
    "NVML consumers' answers wait-for-cordon awaits, comma-separated: allocatable (device plugin), dra-taint "
    "(DRA driver), condition:<Type> (e.g. condition:XidCriticalError). Empty: none.",
)
NVSENTINEL_NAMESPACE = Parameter("nvsentinel-namespace", "nvsentinel", "Namespace NVSentinel runs in (circuit breaker, monitors).")
CORDON_TIMEOUT = Parameter("cordon-timeout", "5m", "Window for NVSentinel to quarantine the node (non-fatal XIDs: must not).")
EVICTION_TIMEOUT = Parameter("eviction-timeout", "10m", "Window for the workers to leave the quarantined node.")
STEPS_IMAGE_PARAMETER = Parameter("steps-image", STEPS_IMAGE, "Image of the steps (must be the installed one: ConfigMap faultflow-config).")
SHIM_IMAGE_PARAMETER = Parameter("shim-image", SHIM_IMAGE, "Image holding the CUDA shim (/opt/faultflow/libfaultflow_cuda.so).")
