"""What every scenario shares: images, node paths, common parameters and stages, and the exit handler
(cleanup + report); the roles are in `workflows.roles`. Hera-free, like the declaration."""

from __future__ import annotations

from workflows.declaration import (
    EvidenceDir,
    HostPath,
    OutputsDir,
    Param,
    Parameter,
    Stage,
    WorkflowField,
)
from workflows.roles import (
    ABORT_WATCHER,
    CLEANUP,
    OBSERVER,
)

# Pinned image references; `deploy/kustomization.yaml` `images:` is the override point.
STEPS_IMAGE = "faultflow-steps:0.1.0"
SHIM_IMAGE = "faultflow-shim:0.1.0"
# The node pods' image (images/node-agent): inject-xid, `shim on` and the toggle-off pod, no cluster client.
NODE_AGENT_IMAGE = "faultflow-node-agent:0.1.0"

RUN_ID = WorkflowField("name")
OUTPUTS = OutputsDir()

# The node's fault-toggle directory: the shim image's init container creates the toggle there, the
# workers mount it read-only (inject-cuda-shim), the node stage writes it.
# steps.gpu.toggle owns the path (DEFAULT_DIR, FILE_NAME); workflows may not import it, so
# tests/workflows/test_step_contract.py holds these spellings equal to it.
TOGGLE_DIR_PATH = "/var/lib/faultflow"
KMSG = HostPath("/dev/kmsg", "/dev/kmsg", "CharDevice")
TOGGLE_DIR = HostPath(TOGGLE_DIR_PATH, TOGGLE_DIR_PATH, "Directory")
TOGGLE_FILE = HostPath(f"{TOGGLE_DIR_PATH}/toggle", f"{TOGGLE_DIR_PATH}/toggle", mount=False)  # inside TOGGLE_DIR
# /proc/driver/nvidia is global (not per PID namespace), so the GPU's PCI address is readable from
# the container's own /proc: no host mount.
PROC = HostPath("/proc", "/proc", mount=False)


# --- parameters ---------------------------------------------------------------------------------
TARGET_PARAMETERS = (
    Parameter("namespace", "dynamo", "Namespace of the Dynamo deployment (must carry faultflow.dev/allow-faults=true)."),
    Parameter("target", "dgd/vllm-agg", "Workload to fault: dgd/NAME (DynamoGraphDeployment), deployment/NAME or statefulset/NAME."),
    Parameter("dgd-version", "auto", "DynamoGraphDeployment API version the cluster serves.", ("auto", "v1alpha1", "v1beta1")),
    # At least every scenario's activeDeadlineSeconds (tests/workflows/test_installation_images.py): the
    # janitor must not revert a run Argo still lets run (it also asks the Workflow's phase first).
    Parameter("ttl", "4h", "After this the janitor reverts whatever the run left behind (unless its Workflow still runs)."),
)
INFERENCE_PARAMETERS = (
    Parameter("frontend-url", "http://vllm-agg-frontend.dynamo.svc:8000", "Base URL of the Dynamo frontend (OpenAI API)."),
    Parameter("threshold", "0.9", "Success rate that counts as healthy (gate, recovery window, report)."),
    Parameter("window", "10", "Recovery: requests in the sliding window that must meet the threshold."),
    Parameter("recovery-deadline", "900", "Seconds inference may take to recover."),
    Parameter("load-rate", "2", "Background traffic: requests started per second for the whole run."),
    Parameter("load-concurrency", "8", "Background traffic: requests in flight at most."),
)


def load_stage(deadline_s: int) -> Stage:
    return Stage(
        "load",
        "load",
        role=OBSERVER,
        deadline_s=deadline_s,
        background=True,
        description="Traffic for the whole run, so the report's timeline covers baseline to recovery.",
        args=(
            "--url",
            Param("frontend-url"),
            "--rate",
            Param("load-rate"),
            "--concurrency",
            Param("load-concurrency"),
            "--outputs",
            OUTPUTS,
        ),
    )


def gate_stage(after: str) -> Stage:
    return Stage(
        "steady-state",
        "verify-inference",
        role=OBSERVER,
        deadline_s=600,
        after=(after,),
        description="Baseline inference must pass before anything is injected.",
        args=(
            "--mode",
            "gate",
            "--url",
            Param("frontend-url"),
            "--requests",
            "10",
            "--threshold",
            Param("threshold"),
            "--phase",
            "baseline",
            "--outputs",
            OUTPUTS,
        ),
    )


# Issue 15 item 14: recovery is measured BEFORE our cleanup restores the workload (its rollout
# restarts every healthy worker once more, which is ours, not the GPU failure's); the second wait,
# after the restore, is what `settle_stage` measures (phase `cleanup`, the report's
# cleanup_disruption_seconds).
CLEANUP_PHASE = "cleanup"


def recover_stage(after: str) -> Stage:
    """How fast inference recovered from the fault (the workload still as the fault left it)."""
    return _wait_recovered("verify-inference", after, "recovery", "Waits until a full window of requests meets the threshold again.")


def settle_stage(after: str) -> Stage:
    """After our own cleanup's rollout: inference must meet the threshold again (reported separately)."""
    return _wait_recovered(
        "verify-after-cleanup",
        after,
        CLEANUP_PHASE,
        "After the workload is restored (our own rollout), waits until inference meets the threshold again.",
    )


def _wait_recovered(name: str, after: str, phase: str, description: str) -> Stage:
    return Stage(
        name,
        "verify-inference",
        role=OBSERVER,
        deadline_s=1800,
        after=(after,),
        description=description,
        args=(
            "--mode",
            "recover",
            "--url",
            Param("frontend-url"),
            "--window",
            Param("window"),
            "--threshold",
            Param("threshold"),
            "--deadline",
            Param("recovery-deadline"),
            "--phase",
            phase,
            "--outputs",
            OUTPUTS,
        ),
    )


PROMETHEUS_URL = Parameter(
    "prometheus-url",
    "",
    "Prometheus that scrapes NVSentinel (e.g. http://prometheus.monitoring:9090): the report sets NVSentinel's quarantine "
    "and eviction durations beside ours, and abort-if's promql: conditions are evaluated there. Empty: skip.",
)
ABORT_IF = Parameter(
    "abort-if",
    "",
    "Stop conditions while the run is live, ';'-separated, e.g. 'availability<0.5 for 5s; p99>2000ms for 10s; "
    "promql:<expr> for 30s; breaker>0.3; cordoned>1'. When one fires the run is stopped (its exit handler reverts the "
    "fault) and the report says why. Empty: none.",
)
# What preflight passes on to the condition parser: a malformed condition stops the run before injection.
ABORT_ARGS = ("--abort-if", Param("abort-if"), "--prometheus-url", Param("prometheus-url"))


def watch_abort_stage(deadline_s: int) -> Stage:
    """The stop conditions, evaluated beside the whole run (a daemon, as `load`); it stops the run itself."""
    return Stage(
        "watch-abort",
        "watch-abort",
        role=ABORT_WATCHER,
        deadline_s=deadline_s,
        background=True,
        # exit 3 (the API server did not take the stop) starts the watch again; an abort (4) is a verdict
        retry=True,
        description="Evaluates the abort-if stop conditions; when one fires, stops the Workflow (the exit handler reverts).",
        args=(
            *ABORT_ARGS,
            "--url",
            Param("frontend-url"),
            "--run-id",
            RUN_ID,
            "--workflow-name",
            WorkflowField("name"),
            "--workflow-namespace",
            WorkflowField("namespace"),
            "--outputs-dir",
            OUTPUTS,
        ),
    )


def report_stage(scenario: str, expect_fault: bool = True, expect_workload_reached: bool = False, prometheus: bool = False) -> Stage:
    """`prometheus`: the scenario has the `prometheus-url` parameter (those with NVSentinel expectations)."""
    return Stage(
        "report",
        "report",
        role=OBSERVER,
        deadline_s=600,
        description="Journal, JUnit, timeline plot and metrics from every stage's events and the load records.",
        args=(
            "--input",
            EvidenceDir(),
            "--outputs",
            OUTPUTS,
            "--scenario",
            scenario,
            "--run-id",
            RUN_ID,
            "--threshold",
            Param("threshold"),
            "--window",
            Param("window"),
            "--expect-fault" if expect_fault else "--no-expect-fault",
            *(("--expect-workload-reached",) if expect_workload_reached else ()),
            *(("--prometheus-url", Param("prometheus-url")) if prometheus else ()),
        ),
    )


def final_cleanup_stage() -> Stage:
    """Exit handler, first: revert whatever the run's ledger still lists (the workload and the toggle).
    Idempotent, so it is harmless after the in-DAG cleanup already ran."""
    return Stage(
        "final-cleanup",
        "cleanup-dgd",
        role=CLEANUP,
        deadline_s=600,
        retry=True,
        description="Reverts everything the run's ledger still lists, whatever happened.",
        args=("--run-id", RUN_ID, "--namespace", Param("namespace"), "--timeout", "5m", "--outputs-dir", OUTPUTS),
    )


HOLD = Parameter("hold", "5m", "How long the fault stays in place before it is healed.")


def hold_stage(after: str) -> Stage:
    return Stage(
        "hold",
        "",
        args=(),
        role=OBSERVER,
        deadline_s=24 * 3600,
        after=(after,),
        hold=Param("hold"),
        description="Keeps the fault in place for the hold time.",
    )
