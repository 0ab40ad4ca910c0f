"""`cuda-only`: the application's CUDA calls fail (shim toggle on) without any kernel-log XID, so
nothing tells NVSentinel: does the platform notice failing workers by itself?"""

from __future__ import annotations

from workflows.declaration import Scenario
from workflows.stages import gpu as gs
from workflows.stages import gpu_parameters as gp
from workflows.stages.common import (
    ABORT_IF,
    HOLD,
    INFERENCE_PARAMETERS,
    PROMETHEUS_URL,
    TARGET_PARAMETERS,
    final_cleanup_stage,
    gate_stage,
    hold_stage,
    load_stage,
    recover_stage,
    report_stage,
    settle_stage,
    watch_abort_stage,
)

NAME = "cuda-only"
DEADLINE_S = 2 * 3600

SCENARIO = Scenario(
    name=NAME,
    title="CUDA only: failing CUDA calls, no XID",
    description=(
        "Loads the CUDA shim into the GPU workers and switches the node's toggle on for the XID's CUDA "
        "error for the hold time, without writing the XID to the kernel log; then restores the workload "
        "and measures how inference behaved and recovered."
    ),
    parameters=(
        *TARGET_PARAMETERS,
        gp.XID,
        gp.GPU,
        gp.FAULT_DURATION,
        *gp.TRIGGER_PARAMETERS,
        gp.NVSENTINEL_NAMESPACE,
        HOLD,
        *INFERENCE_PARAMETERS,
        PROMETHEUS_URL,
        ABORT_IF,
        gp.STEPS_IMAGE_PARAMETER,
        gp.SHIM_IMAGE_PARAMETER,
    ),
    stages=(
        load_stage(DEADLINE_S),
        watch_abort_stage(DEADLINE_S),
        gs.preflight(expect="none"),
        gate_stage(after="preflight"),
        gs.inject_cuda_shim(after="steady-state"),
        gs.watch_reach(after="inject-cuda-shim", deadline_s=DEADLINE_S),
        gs.toggle_on(after="watch-reach"),
        hold_stage(after="toggle-on"),
        gs.toggle_off(after="hold"),
        recover_stage(after="toggle-off"),
        gs.cleanup_dgd(after="verify-inference"),
        settle_stage(after="cleanup-dgd"),
    ),
    exit_stages=(final_cleanup_stage(), report_stage(NAME, expect_workload_reached=True)),
    mutexes=gs.GPU_MUTEXES,
    deadline_s=DEADLINE_S,
)
