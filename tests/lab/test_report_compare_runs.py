"""`faultflow report compare` of two real lab runs (`faultflow run gpu-fault --lab`, XID 79): the DGD
with one GPU worker, then with two. With one worker the fault takes inference down until the worker is
rescheduled; with two the frontend routes (and migrates failed requests) to the healthy one. The
comparison shows the difference, and with the one-worker run as the later one, the gate fails."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import run_cli
from tests.lab.run_checks import release_quarantined, wait_baseline

WORKER = "VllmWorker"


def scale_workers(lab, replicas: int) -> None:
    kube = lab.kube()
    dgd = kube.get(lab.dgd_ref())
    if "services" in dgd["spec"]:  # v1alpha1: a map, merge patch is exact
        kube.merge_patch(lab.dgd_ref(), {"spec": {"services": {WORKER: {"replicas": replicas}}}})
        return
    for component in dgd["spec"]["components"]:  # v1beta1: a list, replaced whole at this resourceVersion
        if component["name"] == WORKER:
            component["replicas"] = replicas
    kube.replace(lab.dgd_ref(), dgd)


def run_gpu_fault(lab, evidence: Path) -> tuple[int, dict]:
    result = run_cli(
        "run", "gpu-fault", "--lab", str(lab.root), "-p", "xid=79", "-p", "cordon-timeout=5s", "--evidence", str(evidence), timeout=400
    )
    release_quarantined(lab)  # NVSentinel's GPU reset: the node is schedulable again for the next run
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr
    return result.returncode, json.loads((evidence / "report" / "report.json").read_text())


def test_one_worker_against_two_shows_the_recovery_difference_and_fails_the_gate(lab, tmp_path: Path) -> None:
    wait_baseline(lab)
    # The runs' verdicts are not this test's business, their reports are. (Seen on a loaded machine:
    # `fault_reached_workload` failed with 0 worker logs read, wait-for-cordon first seeing the node
    # when NVSentinel's drain had already succeeded.)
    _, one = run_gpu_fault(lab, tmp_path / "one")
    scale_workers(lab, 2)
    wait_baseline(lab)
    _, two = run_gpu_fault(lab, tmp_path / "two")
    scale_workers(lab, 1)

    f1, f2 = one["figures"], two["figures"]
    assert f1["impact_observed"]  # one worker: the fault took inference down (recovered later, or not in the run)
    assert (f2["availability_during_fault"] or 0) > (f1["availability_during_fault"] or 0)
    assert two["resilience_score"]["uncapped"] > one["resilience_score"]["uncapped"]

    # Two workers first, one worker later: the later run regresses (recovery tolerance 1 s, as configured).
    done = run_cli("report", "compare", str(tmp_path / "two" / "report"), str(tmp_path / "one" / "report" / "report.json"),
                   "--outputs-dir", str(tmp_path / "cmp"), "--tolerance", "recovery=1s")  # fmt: skip
    print(done.stdout)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "B: time to recovery" in done.stderr
    compared = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    recovery = next(f for f in compared["figures"] if f["figure"] == "recovery")
    assert recovery["values"][1] == (f1["time_to_recovery_s"] if f1["time_to_recovery_s"] is not None else "never")
    assert recovery["values"][0] != recovery["values"][1] and recovery["flags"][1] == "regressed"
    assert "| time to recovery |" in done.stdout
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    # The other way round, neither recovery nor availability regresses (a check may: see above).
    run_cli("report", "compare", str(tmp_path / "one" / "report"), str(tmp_path / "two" / "report"),
            "--outputs-dir", str(tmp_path / "rev"), "--no-plot")  # fmt: skip
    reverse = {f["figure"]: f["flags"][1] for f in json.loads((tmp_path / "rev" / "compare.json").read_text())["figures"]}
    assert reverse["recovery"] != "regressed" and reverse["availability"] != "regressed"
