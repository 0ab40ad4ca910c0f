"""Every step accepts an outputs directory whose parents do not exist yet, and creates it.

In the steps image `/tmp/faultflow` does not exist when a pod starts (Argo's emptyDir is `/tmp`
only), so a step that required the parent of its outputs directory refused every run with exit 2;
the local runner made the directory beforehand, which hid it. Each step runs here with its outputs
directory two levels below a directory that does not exist:

* the cluster steps get a kubeconfig that cannot be loaded, so they go exactly as far as a pod with
  no API server would: past every local check (the outputs directory among them) to the connect,
  which is an infrastructure error (exit 3) — never bad input (exit 2);
* inject-xid, load, verify-inference and report need no cluster and run to the end (report on a
  passing run's evidence), writing their
  output files into the new directory (load and verify-inference against the frontend simulator).
"""

from __future__ import annotations

import click
import pytest

from steps.cli import STEP_COMMANDS
from steps.cli import main as faultflow_main
from tests.cli import faultflow
from tests.steps.inference_fixtures import simulator  # noqa: F401  (fixture)
from tests.steps.run_fixtures import write_run
from tests.steps.test_gpus import make_proc

CLUSTER = ("--kubeconfig", "{nowhere}/kubeconfig")
OUT = "{fresh}/stage/outputs"  # neither {fresh} nor stage exists
RUN = ("--run-id", "r1", "--namespace", "ns1")

# step → (argv after `faultflow step <step>`, the option naming the outputs directory, files it writes there)
CASES: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "preflight": (("--run-id", "r1", "--namespace", "ns1", "--target", "dgd/llm", "--xid", "79", *CLUSTER), "--outputs-dir", ()),
    "inject-cuda-shim": ((*RUN, "--target", "dgd/llm", "--shim-image", "shim:1", "--xid", "79", *CLUSTER), "--outputs-dir", ()),
    "inject-xid": (
        ("--xid", "79", "--pid", "321", "--kmsg-path", "{kmsg}", "--proc-root", "{proc}"),
        "--outputs-dir",
        ("fault-time-ms", "pci", "xid-line"),
    ),
    "wait-for-cordon": (("--node", "gpu-0", "--xid", "79", *CLUSTER), "--outputs-dir", ()),
    "cleanup-dgd": ((*RUN, *CLUSTER), "--outputs-dir", ()),
    "partition-network": ((*RUN, "--target", "dgd/llm", "--partition", "worker-nats", *CLUSTER), "--outputs-dir", ()),
    "degrade-network": ((*RUN, "--target", "dgd/llm", "--peer", "nats", "--loss", "10", *CLUSTER), "--outputs-dir", ()),
    "heal-network": ((*RUN, *CLUSTER), "--outputs-dir", ()),
    "verify-partition": ((*RUN, *CLUSTER), "--outputs-dir", ()),
    "verify-inference": (
        ("--mode", "gate", "--requests", "2", "--rate", "50", "--url", "{url}"),
        "--outputs-dir",
        ("gate.json", "success_rate", "passed", "records.jsonl"),
    ),
    "load": (("--duration", "0.5", "--rate", "20", "--url", "{url}"), "--outputs-dir", ("load.json", "records.jsonl")),
    "report": (("--input", "{run}", "--window", "5"), "--outputs-dir", ("report.json", "junit.xml", "summary.md", "timeline.png")),
    "watch-abort": (("--run-id", "r1", "--abort-if", "cordoned>1", *CLUSTER), "--outputs-dir", ()),
    "watch-reach": (("--node", "gpu-0", "--xid", "79", "--namespace", "ns1", "--target", "dgd/llm", *CLUSTER), "--outputs-dir", ()),
}
# Steps with no outputs directory at all (checked below: they really have no such option).
NO_OUTPUTS = ("restore-node", "janitor", "suite-gate")  # suite-gate: its verdict is its exit code and event
CONNECTS = {
    "preflight",
    "inject-cuda-shim",
    "wait-for-cordon",
    "cleanup-dgd",
    "partition-network",
    "degrade-network",
    "heal-network",
    "verify-partition",
    "watch-abort",
    "watch-reach",
}
# Steps whose options name cluster objects (checked through the API): the directory appears only once
# those proved real, so a cluster that does not answer leaves none (the bad-input matrix's "no change").
DIRECTORY_AFTER_CLUSTER_CHECKS = {"watch-reach"}


def test_every_step_command_is_covered():
    assert set(CASES) | set(NO_OUTPUTS) == set(STEP_COMMANDS)
    ctx = click.Context(faultflow_main)
    group = faultflow_main.get_command(ctx, "step")
    for name in STEP_COMMANDS:
        # (the hidden `--outputs` is the old spelling, accepted for one release)
        options = {o for p in group.get_command(ctx, name).params if not getattr(p, "hidden", False) for o in p.opts}
        expected = set() if name in NO_OUTPUTS else {CASES[name][1]}
        assert options & {"--outputs", "--outputs-dir"} == expected, name


@pytest.mark.parametrize("step", sorted(CASES))
def test_step_creates_an_outputs_directory_whose_parents_do_not_exist(step, tmp_path, request):
    argv, option, files = CASES[step]
    values = {"fresh": str(tmp_path / "fresh"), "nowhere": str(tmp_path / "nowhere")}
    if step == "inject-xid":
        values["proc"] = str(make_proc(tmp_path / "proc", [("0000:17:00.0", 0)]))
        (tmp_path / "kmsg").write_bytes(b"")
        values["kmsg"] = str(tmp_path / "kmsg")
    if step in ("load", "verify-inference"):
        values["url"] = request.getfixturevalue("simulator").url
    if step == "report":
        values["run"] = str(write_run(tmp_path / "run"))  # a passing run's events and records
    outputs = tmp_path / "fresh" / "stage" / "outputs"
    assert not outputs.parent.parent.exists()

    result = faultflow("step", step, *(a.format(**values) for a in argv), option, OUT.format(**values))

    # (the path itself contains "outputs": look for the steps' own wording about the directory)
    assert "outputs directory" not in result.stderr and "--outputs" not in result.stderr, result.stderr
    if step in CONNECTS:
        assert result.returncode == 3 and "cannot load cluster credentials" in result.stderr, result.stderr
    else:
        assert result.returncode == 0, result.stderr
    assert outputs.is_dir() != (step in DIRECTORY_AFTER_CLUSTER_CHECKS)
    assert {f for f in files if (outputs / f).is_file()} == set(files)


def test_an_outputs_directory_below_a_file_is_bad_input(tmp_path):
    """What cannot be created is still refused up front: one line, exit 2, the kernel log untouched."""
    proc = make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])
    kmsg = tmp_path / "kmsg"
    kmsg.write_bytes(b"")
    (tmp_path / "file").write_text("")
    result = faultflow(
        "step",
        "inject-xid",
        "--xid",
        "79",
        "--kmsg-path",
        str(kmsg),
        "--proc-root",
        str(proc),
        "--outputs-dir",
        str(tmp_path / "file" / "outputs"),
    )
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "outputs directory" in result.stderr and "cannot be created" in result.stderr
    assert kmsg.read_bytes() == b""
