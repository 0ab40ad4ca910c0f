"""Guardrails of `faultflow run gpu-fault --lab`: each refusal comes before anything is injected — the
DGD spec unchanged, no toggle on, no ledger entry applied, no inject stage started.

* a namespace that has not opted in (the lab's namespace with its opt-in label removed for the test);
* a second run on the same deployment while the first is running: refused by the Lease lock (exit 1,
  the holder named) while the first goes on and passes;
* NVSentinel's circuit breaker TRIPPED (its ConfigMap, as preflight reads it).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from lab.run_lock import LEASE_DURATION_S, RunLocks, lease_ref
from lab.run_record import FAILED, RunRecord
from steps.errors import CheckFailed
from steps.gpu import nvsentinel
from steps.kube.client import Ref
from steps.run import ledger as L
from steps.run.guardrails import OPT_IN_LABEL
from tests.lab.run_checks import Lab, Run, release_quarantined, snapshot, wait_baseline

INJECTING = ("inject-cuda-shim", "inject-xid", "wait-for-cordon")


@pytest.fixture
def baseline(lab):
    wait_baseline(lab)
    yield snapshot(lab)
    release_quarantined(lab)  # a run that passed leaves NVSentinel's quarantine (its own) behind
    wait_baseline(lab)


def assert_nothing_injected(lab: Lab, run: Run, before) -> None:
    after = snapshot(lab)
    assert after.dgd_spec == before.dgd_spec
    assert after.toggles_on == ()
    ledger = L.LedgerStore(lab.kube()).load(lab.namespace, run.name)
    assert ledger is None or not [e for e in ledger.entries.values() if e.state == L.APPLIED], ledger
    for stage in INJECTING:
        assert not run.stage_lines(stage), run.output()
        assert not (lab.root / "runs" / run.name / stage).exists()


def test_a_namespace_that_has_not_opted_in_is_refused(lab, baseline):
    kube = lab.kube()
    ns = Ref("v1", "namespaces", None, lab.namespace)
    kube.merge_patch(ns, {"metadata": {"labels": {OPT_IN_LABEL: None}}})
    try:
        run = Run.start(lab, "xid=79")
        code = run.finish()
    finally:
        kube.merge_patch(ns, {"metadata": {"labels": {OPT_IN_LABEL: "true"}}})
    assert code == 2, run.output() + run.stderr  # bad input: the preflight step's exit code
    assert any("has not opted in to fault injection" in line for line in run.stage_lines("preflight")), run.output()
    assert_nothing_injected(lab, run, baseline)


def test_a_tripped_circuit_breaker_is_refused(lab, baseline):
    kube = lab.kube()
    breaker = Ref("v1", "configmaps", lab.state["nvsentinel_namespace"], nvsentinel.CIRCUIT_BREAKER_CONFIGMAP)
    closed = kube.get(breaker)["data"]["status"]
    kube.merge_patch(breaker, {"data": {"status": nvsentinel.CIRCUIT_BREAKER_TRIPPED}})
    try:
        run = Run.start(lab, "xid=79")
        code = run.finish()
    finally:
        kube.merge_patch(breaker, {"data": {"status": closed}})
    assert code == 1, run.output() + run.stderr
    assert any("circuit breaker is TRIPPED" in line for line in run.stage_lines("preflight")), run.output()
    assert_nothing_injected(lab, run, baseline)


def test_a_second_run_on_the_same_deployment_is_refused_while_the_first_passes(lab, baseline):
    first = Run.start(lab, "xid=79")
    try:
        first.wait_stage_started("inject-cuda-shim")  # the first holds its locks and is injecting
        second = Run.start(lab, "xid=79")
        code = second.finish()
        assert code == 1, second.output() + second.stderr
        refusal = next(line for line in second.stage_lines("run") if "refused" in line)
        assert re.search(rf"lock faultflow-(gpu|{lab.namespace}) is held by run {first.name}", refusal), refusal
        # Refused before its first stage: no evidence of any stage, no ledger, its record Failed.
        assert not second.stage_lines("preflight") and not second.stage_lines("load"), second.output()
        assert L.LedgerStore(lab.kube()).load(lab.namespace, second.name) is None
        record = lab.kube().get(Ref("argoproj.io/v1alpha1", "workflows", lab.namespace, second.name))
        assert record["status"]["phase"] == FAILED
        assert first.proc.poll() is None, "the refused run must not disturb the first"
    finally:
        first_code = first.finish()
    assert first_code == 0, first.output() + first.stderr
    assert first.output().rstrip().endswith(f"run {first.name}: passed; evidence in {lab.root / 'runs' / first.name}")
    # Both runs' locks are gone: the first released them, the second never held them.
    leases = lab.kube().list(lease_ref(lab.namespace, ""), label_selector="faultflow.dev/lock=true")["items"]
    assert leases == []


def test_a_lock_of_a_run_whose_workflow_ended_is_taken_over(lab, baseline):
    """As Argo releases a terminated workflow's mutexes: a SIGKILLed runner's Lease (still within its
    duration) is free once its Workflow record is Failed — and not while it is Running."""
    kube = lab.kube()
    dead = RunRecord.create(kube, lab.namespace, "gpu-fault-killed", "gpu-fault", {})
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # renewed just now: not expired
    kube.create(
        lease_ref(lab.namespace, ""),
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "faultflow-gpu", "labels": {"faultflow.dev/lock": "true"}},
            "spec": {"holderIdentity": dead.name, "leaseDurationSeconds": LEASE_DURATION_S, "acquireTime": now, "renewTime": now},
        },
    )
    try:
        with pytest.raises(CheckFailed, match=f"held by run {dead.name}"):
            with RunLocks(kube, lab.namespace, ["faultflow-gpu"], "gpu-fault-next"):
                pass
        dead.set_phase(FAILED)
        with RunLocks(kube, lab.namespace, ["faultflow-gpu"], "gpu-fault-next"):
            lease = kube.get(lease_ref(lab.namespace, "faultflow-gpu"))
            assert lease["spec"]["holderIdentity"] == "gpu-fault-next"
    finally:
        kube.delete(Ref("argoproj.io/v1alpha1", "workflows", lab.namespace, dead.name))
