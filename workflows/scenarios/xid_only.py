"""`xid-only`: only the kernel-log evidence — the XID line, no CUDA errors — to test NVSentinel's
detection and remediation (and the platform's reaction to the drain) on their own."""

from __future__ import annotations

from workflows.declaration import Scenario
from workflows.stages import gpu as gs
from workflows.stages import gpu_parameters as gp
from workflows.stages.common import (
    ABORT_IF,
    INFERENCE_PARAMETERS,
    PROMETHEUS_URL,
    TARGET_PARAMETERS,
    final_cleanup_stage,
    gate_stage,
    load_stage,
    recover_stage,
    report_stage,
    watch_abort_stage,
)

NAME = "xid-only"
DEADLINE_S = 2 * 3600

SCENARIO = Scenario(
    name=NAME,
    title="XID only: kernel-log evidence, NVSentinel remediation",
    description=(
        "Writes the XID to the target node's kernel log (no CUDA errors), waits for NVSentinel to "
        "quarantine the node (or, for a non-fatal XID, asserts it does not) and measures inference."
    ),
    parameters=(
        *TARGET_PARAMETERS,
        gp.XID,
        gp.GPU,
        gp.EXPECT,
        gp.RECOVERY_ACTION,
        gp.DEDUP_WINDOW,
        gp.NVSENTINEL_NAMESPACE,
        gp.CORDON_TIMEOUT,
        gp.EVICTION_TIMEOUT,
        gp.FAULT_DURATION,
        *INFERENCE_PARAMETERS,
        PROMETHEUS_URL,
        ABORT_IF,
        gp.STEPS_IMAGE_PARAMETER,
    ),
    stages=(
        load_stage(DEADLINE_S),
        watch_abort_stage(DEADLINE_S),
        gs.preflight(shim=False),
        gate_stage(after="preflight"),
        gs.inject_xid(after="steady-state", toggle=False),
        gs.wait_for_cordon(after="inject-xid", fault_time=True),
        recover_stage(after="wait-for-cordon"),
        gs.cleanup_dgd(after="verify-inference"),
    ),
    exit_stages=(final_cleanup_stage(), report_stage(NAME, prometheus=True)),
    mutexes=gs.GPU_MUTEXES,
    deadline_s=DEADLINE_S,
)
