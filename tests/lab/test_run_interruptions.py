"""The interruption matrix: `faultflow run gpu-fault --lab` stopped at every stage (and
`network-partition` at every stage that makes, checks, holds or heals its policies), by SIGTERM (the
runner forwards it, runs its exit stages and exits 143) and by SIGKILL to its whole process group
(nothing more runs; as `argo terminate` and its cleanup would, the test marks the run's Workflow Failed,
then runs `faultflow step janitor`). Afterwards everything faultflow owns is back at its
pre-run state (`tests.lab.run_checks.leftovers`, which also defines that state for a node NVSentinel
quarantined).

One lab for the whole matrix; each case first waits until the lab is back at its baseline (the DGD
rolled out, a node NVSentinel quarantined released by a GPU-reset line). The module prints
`leftovers after interruption matrix: L of N` and `interruption_matrix_s: S` at its end.
"""

from __future__ import annotations

import json
import time

import pytest

from lab.processes import wait_until
from lab.run_record import workflow_ref
from steps.gpu import nvsentinel
from steps.kube.client import Ref
from tests.cli import run_cli
from tests.lab.run_checks import Lab, Run, leftovers, release_quarantined, snapshot, wait_baseline

STAGES = ("preflight", "steady-state", "inject-cuda-shim", "inject-xid", "wait-for-cordon", "toggle-off", "verify-inference", "cleanup-dgd")
NETWORK_STAGES = ("partition-network", "verify-partition", "hold", "heal-network")
EXIT_STAGES = ("final-cleanup", "report")
STOPPED = 143


class Matrix:
    """The cases' outcomes, printed when the module ends."""

    def __init__(self):
        self.start = time.monotonic()
        self.cases: list[tuple[str, list[str]]] = []

    def record(self, case: str, found: list[str]) -> None:
        self.cases.append((case, found))

    def summary(self) -> list[str]:
        lines = [f"  {case}: {'clean' if not found else '; '.join(found)}" for case, found in self.cases]
        dirty = sum(1 for _, found in self.cases if found)
        return [
            *lines,
            f"leftovers after interruption matrix: {dirty} of {len(self.cases)}",
            f"interruption_matrix_s: {time.monotonic() - self.start:.1f}",
        ]


@pytest.fixture(scope="module")
def matrix(request, lab):
    matrix = Matrix()
    yield matrix
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the figures are the point: shown also without -s
        print("\n" + "\n".join(matrix.summary()), flush=True)


def xid_node(lab: Lab, run: Run) -> str | None:
    """The node whose kernel log got the run's XID, from inject-xid's event lines (None: not written)."""
    events = lab.root / "runs" / run.name / "inject-xid" / "step-events.jsonl"
    if not events.is_file():
        return None
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "fault_injected" and event.get("kind") == "xid":
            return (lab.root / "runs" / run.name / "preflight" / "node").read_text().strip()
    return None


def wait_nvsentinel_quarantine(lab: Lab, node: str) -> None:
    """XID 79 is fatal in NVSentinel's catalogue: once written, the node will be quarantined whatever
    faultflow does next. Waiting for it makes the comparison below see NVSentinel's cordon, which
    faultflow must leave in place."""
    kube = lab.kube()
    wait_until(
        lambda: True if nvsentinel.is_quarantined(kube.get(Ref("v1", "nodes", None, node))) else None,
        what=f"NVSentinel quarantining {node}",
        timeout_s=30,
    )


def end_like_argo_terminate(lab: Lab, run: Run) -> None:
    """What `argo terminate` leaves (the run's Workflow Failed), then the janitor."""
    lab.kube().merge_patch(workflow_ref(lab.namespace, run.name), {"status": {"phase": "Failed"}})
    janitor = run_cli("step", "janitor", "--kubeconfig", lab.kubeconfig, timeout=180)
    assert janitor.returncode == 0, janitor.stdout + janitor.stderr


def stop(lab: Lab, run: Run, stage: str, how: str) -> None:
    """SIGTERM: the runner stops the stage, shows how it ended and runs the exit stages; SIGKILL:
    nothing more runs, and the janitor cleans up after `argo terminate`'s equivalent."""
    if how == "SIGTERM":
        run.terminate()
        code = run.finish()
        assert code == STOPPED, run.output() + run.stderr
        assert run.stage_finished(stage), run.output()
        # The exit stages ran to their end, after the stop, and left their evidence.
        for exit_stage in EXIT_STAGES:
            assert run.stage_finished(exit_stage), run.output()
            assert (lab.root / "runs" / run.name / exit_stage / "stdout.log").is_file()
        assert run.output().rstrip().endswith(f"failed (exit {STOPPED}); evidence in {lab.root / 'runs' / run.name}")
    else:
        run.kill_group()
        assert run.proc.returncode == -9
        assert not run.stage_lines("final-cleanup"), "a SIGKILLed runner must run nothing more"
        end_like_argo_terminate(lab, run)


def case(scenario: str, stage: str, how: str, run: Run) -> str:
    """The case's line in the matrix, with where the stop landed as the runner saw the stage end: shown,
    not asserted. Exit 143: SIGTERM came while the step's trap was set (around every change it makes),
    and it undid its partial change; -15: it came outside the trap, before a change began or after one
    was complete and in the ledger, so the exit stages revert it; ✓: a stage of tenths of a second
    ended just before. The leftovers check is what is asserted."""
    ends = [text.split(" (")[0] for text in run.stage_lines(stage) if text.startswith(("✓", "✗ exit"))]
    return f"{scenario:<17} {stage:<17} {how} (stage end: {ends[0] if ends else 'none, killed in it'})"


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_run_stopped_at_any_stage_leaves_the_lab_as_it_was(lab, matrix, stage, how):
    wait_baseline(lab)
    before = snapshot(lab)
    run = Run.start(lab, "xid=79")
    run.wait_stage_started(stage)
    stop(lab, run, stage, how)
    node = xid_node(lab, run)
    if node is not None:
        wait_nvsentinel_quarantine(lab, node)
    found = leftovers(lab, before)
    matrix.record(case("gpu-fault", stage, how, run), found)
    released = release_quarantined(lab)
    assert not found, "\n".join(found) + "\n" + run.output()
    # The XID reached NVSentinel exactly when inject-xid wrote it: NVSentinel's cordon is its own.
    assert released == ([node] if node else []), (released, node)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("stage", NETWORK_STAGES)
def test_a_partition_stopped_at_any_stage_leaves_no_policy(lab, matrix, stage, how):
    """network-partition stopped while its NetworkPolicies are being made, checked, held or healed."""
    wait_baseline(lab)
    before = snapshot(lab)
    run = Run.start(lab, "hold=5s", scenario="network-partition")
    run.wait_stage_started(stage)
    stop(lab, run, stage, how)
    found = leftovers(lab, before)
    matrix.record(case("network-partition", stage, how, run), found)
    assert not found, "\n".join(found) + "\n" + run.output()


def _event_time(path, name: str) -> float | None:
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == name:
            return float(event["time"])
    return None


@pytest.mark.parametrize("condition", ["cordoned>0 for 1s"])
def test_a_run_aborted_by_its_stop_condition_leaves_the_lab_as_it_was(lab, matrix, condition):
    """Issue 18, the matrix's abort column: the watch-abort daemon sees NVSentinel's cordon of the XID's
    node (more nodes cordoned than the condition allows), the runner stops the running stage as Argo
    does after the watcher's `argo stop`, the exit stages revert, and the report says why."""
    wait_baseline(lab)
    before = snapshot(lab)
    run = Run.start(lab, "xid=79", f"abort-if={condition}")
    code = run.finish()
    assert code == 4, run.output() + run.stderr
    assert run.output().rstrip().endswith(f"failed (exit 4); evidence in {lab.root / 'runs' / run.name}")
    evidence = lab.root / "runs" / run.name
    report = json.loads((evidence / "report" / "report.json").read_text())
    assert report["aborted"] == condition
    assert f"aborted: {condition}" in (evidence / "report" / "summary.md").read_text()
    assert any(c["name"] == "abort_if" and c["status"] == "failed" for c in report["checks"]), report["checks"]
    for exit_stage in EXIT_STAGES:
        assert run.stage_finished(exit_stage), run.output()
    aborted_at = _event_time(evidence / "watch-abort" / "step-events.jsonl", "aborted")
    reverted_at = _event_time(evidence / "final-cleanup" / "step-events.jsonl", "fault_cleared")
    node = xid_node(lab, run)
    assert node is not None, run.output()
    wait_nvsentinel_quarantine(lab, node)
    found = leftovers(lab, before)
    matrix.record(case("gpu-fault", "abort-if", condition, run), found)
    released = release_quarantined(lab)
    assert not found, "\n".join(found) + "\n" + run.output()
    assert released == [node], (released, node)
    if aborted_at is not None and reverted_at is not None:
        print(f"abort_latency_s: {reverted_at - aborted_at:.2f} (condition fired → final-cleanup's toggle off)")
