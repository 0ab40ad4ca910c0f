"""`gpu-fault`: the five-stage GPU fault flow of design.md — CUDA calls fail at the moment the node's
kernel log shows the XID; NVSentinel cordons and drains; cleanup; inference recovers."""

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
    settle_stage,
    watch_abort_stage,
)

NAME = "gpu-fault"
DEADLINE_S = 3 * 3600

SCENARIO = Scenario(
    name=NAME,
    title="GPU fault: CUDA errors + XID, NVSentinel remediation, recovery",
    description=(
        "Loads the CUDA shim into the GPU workers, then on the target node switches the shim's toggle on "
        "and writes the XID to the kernel log at the same moment; waits for NVSentinel to quarantine the "
        "node and the workers to leave it, restores the workload and measures how fast inference recovered."
    ),
    parameters=(
        *TARGET_PARAMETERS,
        gp.XID,
        gp.GPU,
        gp.FAULT_DURATION,
        *gp.TRIGGER_PARAMETERS,
        gp.EXPECT,
        gp.RECOVERY_ACTION,
        gp.DEDUP_WINDOW,
        gp.NVML_CONSUMERS,
        gp.EXPECT_CONSUMERS,
        gp.NVSENTINEL_NAMESPACE,
        gp.CORDON_TIMEOUT,
        gp.EVICTION_TIMEOUT,
        *INFERENCE_PARAMETERS,
        PROMETHEUS_URL,
        ABORT_IF,
        gp.STEPS_IMAGE_PARAMETER,
        gp.SHIM_IMAGE_PARAMETER,
    ),
    stages=(
        load_stage(DEADLINE_S),
        watch_abort_stage(DEADLINE_S),
        gs.preflight(),
        gate_stage(after="preflight"),
        gs.inject_cuda_shim(after="steady-state", nvml=True),
        gs.watch_reach(after="inject-cuda-shim", deadline_s=DEADLINE_S),
        gs.inject_xid(after="watch-reach", toggle=True),
        gs.wait_for_cordon(after="inject-xid", fault_time=True, cuda=True, consumers=True),
        gs.toggle_off(after="wait-for-cordon", reach=False),
        recover_stage(after="toggle-off"),
        gs.cleanup_dgd(after="verify-inference"),
        settle_stage(after="cleanup-dgd"),
    ),
    exit_stages=(final_cleanup_stage(), report_stage(NAME, expect_workload_reached=True, prometheus=True)),
    mutexes=gs.GPU_MUTEXES,
    deadline_s=DEADLINE_S,
)
