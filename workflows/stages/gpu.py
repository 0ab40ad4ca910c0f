"""The GPU scenarios' stages (preflight → shim → node → cordon → cleanup), shared by gpu-fault,
xid-only and cuda-only. Every option passed exists in the step's click command (steps/*.py), and
every host path is passed explicitly (never a step's default)."""

from __future__ import annotations

from workflows.declaration import HostPath, Output, Param, Stage, WorkflowField
from workflows.roles import (
    CLEANUP,
    CORDON_WATCHER,
    NODE_AGENT,
    PREFLIGHT,
    SHIM_INJECTOR,
)
from workflows.stages.common import ABORT_ARGS, KMSG, OUTPUTS, PROC, RUN_ID, TOGGLE_DIR, TOGGLE_FILE

NODE = Output("preflight", "node")
# With the shim: the node inject-cuda-shim confirmed after its rollout (a Ready, shimmed worker there).
SHIMMED_NODE = Output("inject-cuda-shim", "node")
# One GPU fault per cluster at a time (NVSentinel's circuit breaker counts cordons cluster-wide), and
# never two runs on one namespace's deployments.
GPU_MUTEXES = ("faultflow-gpu", "faultflow-{namespace}")
TARGET_ARGS = ("--namespace", Param("namespace"), "--target", Param("target"), "--dgd-version", Param("dgd-version"))


# NVSentinel's metadata-collector output on the node (read-only use: the expected action depends on it).
# NVSentinel's own DaemonSets create the directory; on a node without NVSentinel it is missing, so it is
# mounted only when NVSentinel is expected to act (preflight's resolved `expect` is not `none`): neither
# a pod that cannot start nor a directory made on the user's node (inject-xid handles its absence).
NVSENTINEL_DIR_PATH = "/var/lib/nvsentinel"
NVSENTINEL_DIR = HostPath(NVSENTINEL_DIR_PATH, NVSENTINEL_DIR_PATH, "Directory", unless=(Output("preflight", "expect"), "none"))
GPU_METADATA = HostPath(f"{NVSENTINEL_DIR_PATH}/gpu_metadata.json", f"{NVSENTINEL_DIR_PATH}/gpu_metadata.json", mount=False)


def preflight(expect: str | Param = Param("expect"), shim: bool = True) -> Stage:
    """`shim`: the scenario has a shim-image parameter, which preflight refuses unless it is the installed image."""
    images = ("--steps-image", Param("steps-image")) + (("--shim-image", Param("shim-image")) if shim else ("--no-shim",))
    # NVSentinel's dedup window is a parameter where NVSentinel is expected to act (expect given by the user).
    dedup = ("--dedup-window", Param("dedup-window")) if isinstance(expect, Param) else ()
    return Stage(
        "preflight",
        "preflight",
        role=PREFLIGHT,
        deadline_s=300,
        retry=True,
        outputs=("node", "expect"),
        description="Guardrails, target node and GPU, run ledger.",
        args=(
            "--run-id",
            RUN_ID,
            *TARGET_ARGS,
            "--xid",
            Param("xid"),
            "--gpu",
            Param("gpu"),
            "--expect",
            expect,
            *dedup,
            "--nvsentinel-namespace",
            Param("nvsentinel-namespace"),
            "--toggle-dir",
            TOGGLE_DIR,
            "--fault-duration",
            Param("fault-duration"),
            *images,
            "--ttl",
            Param("ttl"),
            "--workflow-name",
            WorkflowField("name"),
            "--workflow-namespace",
            WorkflowField("namespace"),
            "--workflow-uid",
            WorkflowField("uid"),
            *ABORT_ARGS,
            "--outputs-dir",
            OUTPUTS,
        ),
    )


def inject_cuda_shim(after: str, nvml: bool = False) -> Stage:
    """`nvml`: the scenario has the nvml-consumers parameter (DaemonSets that get the NVML interposer)."""
    consumers = ("--nvml-consumers", Param("nvml-consumers")) if nvml else ()
    return Stage(
        "inject-cuda-shim",
        "inject-cuda-shim",
        role=SHIM_INJECTOR,
        deadline_s=1200,
        retry=True,
        after=(after,),
        outputs=("node",),
        description="GPU workers load the CUDA shim in passthrough; waits for the rollout and the shim's marker.",
        args=(
            "--run-id",
            RUN_ID,
            *TARGET_ARGS,
            "--shim-image",
            Param("shim-image"),
            "--xid",
            Param("xid"),
            "--toggle-dir",
            TOGGLE_DIR,
            *consumers,
            "--timeout",
            "15m",
            "--outputs-dir",
            OUTPUTS,
        ),
    )


def _node_stage(name: str, step: str, after: str, host_paths, args, outputs=(), node: Output = NODE) -> Stage:
    # No retry: the fault must happen once (a second XID line is a second fault).
    return Stage(
        name,
        step,
        role=NODE_AGENT,
        deadline_s=300,
        after=(after,),
        outputs=outputs,
        pinned_to=node,
        host_paths=host_paths,
        privileged=True,
        args=args,
        description="Privileged pod on the target node: only /dev/kmsg and the toggle directory, no API token.",
    )


# The trigger parameters (gpu_parameters.TRIGGER_PARAMETERS) as the options of `shim on` / inject-xid.
TRIGGER_ARGS = (
    "--mode",
    Param("fault-mode"),
    "--hang-ms",
    Param("hang-ms"),
    "--after-calls",
    Param("after-calls"),
    "--probability",
    Param("probability"),
    "--seed",
    Param("seed"),
)


def inject_xid(after: str, toggle: bool) -> Stage:
    """The XID line (and with `toggle` the CUDA toggle first, so both happen at one moment). The toggle
    names the XID's GPU by PCI bus id (inject-xid reads it with the line's): the `gpu` parameter is the
    host's device minor, which is not the CUDA ordinal a worker sees, so it is not passed as --toggle-gpu."""
    toggle_args = ("--toggle-dir", TOGGLE_DIR, "--expires-in", Param("fault-duration"), *TRIGGER_ARGS) if toggle else ()
    return _node_stage(
        "inject-xid",
        "inject-xid",
        after,
        (KMSG, NVSENTINEL_DIR, TOGGLE_DIR) if toggle else (KMSG, NVSENTINEL_DIR),
        (
            "--xid",
            Param("xid"),
            "--gpu",
            Param("gpu"),
            "--recovery-action",
            Param("recovery-action"),
            "--kmsg-path",
            KMSG,
            "--proc-root",
            PROC,
            "--gpu-metadata",
            GPU_METADATA,
            *toggle_args,
            "--run-id",
            RUN_ID,
            "--outputs-dir",
            OUTPUTS,
        ),
        outputs=("fault-time-ms", "pci", "expected-action", "expected-why"),
        node=SHIMMED_NODE if toggle else NODE,
    )


def toggle_on(after: str) -> Stage:
    """CUDA errors without a kernel-log line (cuda-only)."""
    return _node_stage(
        "toggle-on",
        "shim on",
        after,
        (TOGGLE_DIR,),
        # The gpu parameter is the host's device minor: named by its PCI bus id (as inject-xid does), never
        # as --gpu, which is the CUDA ordinal inside a worker (a pod holding host GPU 3 sees device 0).
        (
            "--file",
            TOGGLE_FILE,
            "--xid",
            Param("xid"),
            "--expires-in",
            Param("fault-duration"),
            "--host-gpu",
            Param("gpu"),
            "--proc-root",
            PROC,
            *TRIGGER_ARGS,
            # The switch is the run's fault: announced as fault_injected (the report's baseline ends there).
            "--run-id",
            RUN_ID,
        ),
        node=SHIMMED_NODE,
    )


def watch_reach(after: str, deadline_s: int) -> Stage:
    """A daemon from before the fault to the end of the run: follows the target node's workers' logs
    for the shim injecting the XID (fault_reached_workload). The fault stages wait until it is ready
    (every worker's log stream open), so NVSentinel draining the node right after the fault cannot
    take the evidence away, however fast it is."""
    return Stage(
        "watch-reach",
        "watch-reach",
        role=CORDON_WATCHER,
        deadline_s=deadline_s,
        after=(after,),
        retry=True,  # exit 3 before it is ready (Argo retries a daemon; its retry node is daemoned with it)
        background=True,
        ready="watching",
        description="Follows the target node's workers' logs from before the fault: did the shim inject the XID?",
        args=(
            "--node",
            SHIMMED_NODE,
            "--xid",
            Param("xid"),
            "--namespace",
            Param("namespace"),
            "--target",
            Param("target"),
            "--run-id",
            RUN_ID,
            "--outputs-dir",
            OUTPUTS,
        ),
    )


def wait_for_cordon(after: str, fault_time: bool, cuda: bool = False, consumers: bool = False) -> Stage:
    """`cuda`: the workers load the shim — the node is inject-cuda-shim's (whether the fault reached
    them is watch-reach's to say). `consumers`: the scenario has the expect-consumers parameter (the
    NVML consumers' answers to await)."""
    answers = ("--expect-consumer", Param("expect-consumers")) if consumers else ()
    timing = (
        (
            "--fault-time-ms",
            Output("inject-xid", "fault-time-ms"),
            "--pci",
            Output("inject-xid", "pci"),
            "--expected-action",
            Output("inject-xid", "expected-action"),
            "--expected-why",
            Output("inject-xid", "expected-why"),
        )
        if fault_time
        else ()
    )
    node = SHIMMED_NODE if cuda else NODE
    # inject-cuda-shim confirmed a Ready worker on that node before the fault: none left when this
    # step looks means NVSentinel's drain was faster, not that there was nothing to evict.
    confirmed = ("--workers-confirmed",) if cuda else ()
    return Stage(
        "wait-for-cordon",
        "wait-for-cordon",
        role=CORDON_WATCHER,
        deadline_s=1800,
        retry=True,
        after=(after,),
        description="NVSentinel quarantines the node (non-fatal XID: must not); the workers leave it.",
        args=(
            "--node",
            node,
            "--xid",
            Param("xid"),
            "--timeout",
            Param("cordon-timeout"),
            *timing,
            "--expect",
            Output("preflight", "expect"),
            "--dedup-window",
            Param("dedup-window"),
            *answers,
            "--namespace",
            Param("namespace"),
            "--target",
            Param("target"),
            "--wait-evicted",
            *confirmed,
            "--eviction-timeout",
            Param("eviction-timeout"),
            "--run-id",
            RUN_ID,
            "--outputs-dir",
            OUTPUTS,
        ),
    )


def cleanup_dgd(after: str) -> Stage:
    """Restores the workload and switches the toggle off (still on only when it has not expired)."""
    return Stage(
        "cleanup-dgd",
        "cleanup-dgd",
        role=CLEANUP,
        deadline_s=600,
        retry=True,
        after=(after,),
        description="Restores the workload exactly from the ledger and switches the node toggle off.",
        args=("--run-id", RUN_ID, "--namespace", Param("namespace"), "--timeout", "5m", "--outputs-dir", OUTPUTS),
    )


def toggle_off(after: str, reach: bool = False) -> Stage:
    """Ends the fault (the node's toggle off) without restoring the workload, so recovery is measured
    before our own rollout (issue 15 item 14). `reach`: the step first reads the workers' logs once for
    the injected XID (fault_reached_workload); the scenarios leave that to watch-reach, which followed
    them from before the fault. gpu-fault: after NVSentinel's answer. A fatal XID's workers have left the
    cordoned node by then, so this changes nothing for them; a non-fatal one (43, 94: no cordon, no
    drain) ends here, as the transient fault it is — left on, nothing would ever let inference recover."""
    return Stage(
        "toggle-off",
        "cleanup-dgd",
        role=CLEANUP,
        deadline_s=600,
        retry=True,
        after=(after,),
        description="Switches the node toggle off (the workload keeps the shim until cleanup-dgd).",
        args=(
            "--run-id",
            RUN_ID,
            "--namespace",
            Param("namespace"),
            "--timeout",
            "5m",
            "--no-restore-workload",
            *(("--expect-cuda-faults",) if reach else ()),
            "--outputs-dir",
            OUTPUTS,
        ),
    )
