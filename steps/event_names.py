"""The event names every step emits (`steps.events.emit(step, EventName.X, **fields)`), in one place.

The report (`faultflow step report`) builds the run's timeline and its phases from these names, so a
step that spells one differently silently drops out of the verdict. Use the members, never literals
(`from steps.event_names import EventName`); they are `StrEnum`s, so they compare, hash and serialise
as the plain strings the report reads back.

Every event line is `{"time": <unix seconds>, "step": <step name>, "event": <name>, ...fields}`.
Times are wall-clock (`time.time()`): steps run in different pods, so the report trusts the nodes'
NTP; the inference load records use the same clock.

Timeline (in the order a GPU scenario produces them; fields in brackets are expected, not enforced):

===================== ======================================================= ==========================
name                  meaning                                                 emitted by
===================== ======================================================= ==========================
run_started           the scenario began (run_id, scenario)                   preflight
fault_injected        the fault is live from this instant (kind: cuda|xid|    inject-xid (cuda: toggle
                      network, xid, node, gpu, pci)                           on; xid: kernel line),
                                                                              network steps
xid_detected          NVSentinel saw the XID (node condition SysLogsXIDError) wait-for-cordon
                      (node, xid)
node_cordoned         NVSentinel quarantined the node (node)                  wait-for-cordon
consumer_detected     an NVML consumer answered: allocatable drop, DRA taint, wait-for-cordon
                      node condition (consumer, check, latency_ms)            --expect-consumer
pods_evicted          the workers left the node (node, pods)                  wait-for-cordon
remediation_started   generic start of the platform's response, for           any step
                      scenarios without a cordon
dgd_restored          the DGD is back to its ledger snapshot (dgd)            cleanup-dgd, janitor,
                                                                              inject-cuda-shim (SIGTERM)
fault_cleared         the fault is no longer live (kind, node)                cleanup-dgd, janitor,
                                                                              inject-xid (SIGTERM), heal
recovery_started      generic start of the recovery phase                     any step
phase_started         explicit phase boundary (phase: a free name)            any step
inference_recovered   sliding-window success rate reached the threshold       verify-inference --mode
                      (success_rate, window, time_to_recovery_s)              recover
run_finished          the scenario ended                                      exit handler
===================== ======================================================= ==========================

Verdict events (each one becomes a JUnit testcase in the report):

- `check_passed` / `check_failed` with `check` (a short name, e.g. `node_cordoned_within_window`) and,
  when failed, `reason` (one line). Any step may report any number of checks.
- `step_finished` with `exit_code`; a non-zero code fails the testcase `<step>`.

Informational (on the timeline, no phase or verdict of their own): `step_started`, `load_started`,
`load_stopped`, `report_written`, `ledger_opened`, `preflight_passed`, `planned_change` (`--dry-run`),
`shim_patched`, `rollout_done`, `shim_verified`, `watch_started`, `watch_relisted`,
`node_not_cordoned`, `node_restored`, `partition_verified`, `already_clean`, `skipped`,
`would_revert`, `janitor_done`, `node_left`, `revert_deferred`, `revert_failed`,
`revert_refused`, `fault_reached_workload` (read by the report's `workload_reached` check), `suite_verdict`, and `recovered` from `faults recover` (runs reverted by hand).
`aborted` (the abort watcher's stop condition fired: `condition`, `value`; the report's `aborted` field and
summary line), `watch_armed`, `workflow_stopped`, `halt_set`, `halt_cleared`.

Phases (the report's per-phase statistics): `baseline` until the first `fault_injected`; `fault`
from it; `remediation` from the first of `xid_detected`/`node_cordoned`/`pods_evicted`/
`remediation_started` after the fault; `recovery` from the first of `fault_cleared`/`dgd_restored`/
`recovery_started` after that. A `phase_started` event inserts a boundary with its own name.
"""

from __future__ import annotations

from enum import StrEnum

# Where a step's pod keeps its events besides stdout: Argo cannot hand a container's stdout to the
# report as a file, so the scenarios set this to a file in the stage's outputs directory. It lives
# here, beside the names, because workflows/ may import only this module and the XID catalogue.
EVENTS_FILE_ENV = "FAULTFLOW_EVENTS_FILE"


class EventName(StrEnum):
    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"

    FAULT_INJECTED = "fault_injected"
    XID_DETECTED = "xid_detected"
    NODE_CORDONED = "node_cordoned"
    PODS_EVICTED = "pods_evicted"
    REMEDIATION_STARTED = "remediation_started"
    DGD_RESTORED = "dgd_restored"
    FAULT_CLEARED = "fault_cleared"
    RECOVERY_STARTED = "recovery_started"
    PHASE_STARTED = "phase_started"

    CHECK_PASSED = "check_passed"
    CHECK_FAILED = "check_failed"

    LOAD_STARTED = "load_started"
    LOAD_STOPPED = "load_stopped"
    INFERENCE_RECOVERED = "inference_recovered"
    REPORT_WRITTEN = "report_written"

    # Informational: what a step did on the way (read by people and tests, not by the verdict).
    LEDGER_OPENED = "ledger_opened"
    PREFLIGHT_PASSED = "preflight_passed"
    PLANNED_CHANGE = "planned_change"
    SHIM_PATCHED = "shim_patched"
    ROLLOUT_DONE = "rollout_done"
    SHIM_VERIFIED = "shim_verified"
    WATCH_STARTED = "watch_started"
    WATCH_RELISTED = "watch_relisted"
    NODE_NOT_CORDONED = "node_not_cordoned"
    NODE_ANNOTATED = "node_annotated"  # NVSentinel in monitor-only/dry-run: it marked the node, no cordon
    XID_DEDUPLICATED = "xid_deduplicated"  # NVSentinel treated the XID as a repeat inside its window
    WAITING_FOR_DEDUP_WINDOW = "waiting_for_dedup_window"
    NODE_RESTORED = "node_restored"
    PARTITION_VERIFIED = "partition_verified"
    ALREADY_CLEAN = "already_clean"
    SKIPPED = "skipped"
    WOULD_REVERT = "would_revert"
    JANITOR_DONE = "janitor_done"
    NODE_LEFT = "node_left"  # the janitor never uncordons: a node entry is left for a person
    REVERT_DEFERRED = "revert_deferred"  # a toggle on a NotReady node: the next sweep retries
    REVERT_FAILED = "revert_failed"  # one entry failed; the sweep goes on and exits 3 at the end
    REVERT_REFUSED = "revert_refused"  # the ledger names something outside the run's reach
    FAULT_REACHED_WORKLOAD = "fault_reached_workload"  # did the workers log the shim injecting the XID
    CONSUMER_DETECTED = "consumer_detected"  # an NVML consumer answered (consumer, check, latency_ms, evidence)
    SUITE_VERDICT = "suite_verdict"  # the nightly suite's gate over its child Workflows
    WATCH_ARMED = "watch_armed"  # the abort watcher began evaluating its conditions (conditions, interval_s)
    ABORTED = "aborted"  # a stop condition fired (condition, value, held_s): the run was stopped; the report prints it
    WORKFLOW_STOPPED = "workflow_stopped"  # the abort watcher or `faultflow halt` stopped a Workflow (workflow, reason)
    HALT_SET = "halt_set"  # `faultflow halt`: the cluster-wide halt is in force (reason, stopped)
    HALT_CLEARED = "halt_cleared"  # `faultflow halt --clear`

    # Derived by the report from the load records (never emitted by a step), shown on the timeline.
    FIRST_FAILED_REQUEST = "first_failed_request"
    FIRST_SUCCESS_AFTER_FAILURE = "first_success_after_failure"
    RECOVERED = "recovered"
    # `faults recover` has always printed this name for "runs reverted by hand"; an alias of RECOVERED
    # (same string), kept so its output does not change. Its output is never a report input.
    FAULTS_RECOVERED = "recovered"


class Phase(StrEnum):
    """The report's standard phases (a `phase_started` event may add others, by any name)."""

    BASELINE = "baseline"
    FAULT = "fault"
    REMEDIATION = "remediation"
    RECOVERY = "recovery"


# The events that open each phase (first occurrence after the previous phase began).
FAULT_START_EVENTS = frozenset({EventName.FAULT_INJECTED})
REMEDIATION_START_EVENTS = frozenset(
    {EventName.XID_DETECTED, EventName.NODE_CORDONED, EventName.PODS_EVICTED, EventName.REMEDIATION_STARTED}
)
RECOVERY_START_EVENTS = frozenset({EventName.FAULT_CLEARED, EventName.DGD_RESTORED, EventName.RECOVERY_STARTED})

# Events drawn on the timeline plot, with a short label a person reads at a glance.
TIMELINE_LABELS: dict[str, str] = {
    EventName.FAULT_INJECTED: "fault injected",
    EventName.XID_DETECTED: "XID detected",
    EventName.NODE_CORDONED: "node cordoned",
    EventName.PODS_EVICTED: "pods evicted",
    EventName.CONSUMER_DETECTED: "consumer reacted",
    EventName.DGD_RESTORED: "DGD restored",
    EventName.FAULT_CLEARED: "fault cleared",
    EventName.FIRST_FAILED_REQUEST: "first failure",
    EventName.FIRST_SUCCESS_AFTER_FAILURE: "first success",
    EventName.RECOVERED: "recovered",
}
