"""How the local runner turns a scenario declaration into command lines (no processes run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.run_plan import RunPlan, parameter_values, parse_assignments, run_name
from steps.errors import BadInput, InfrastructureError
from workflows.scenarios import by_name


def plan(tmp_path: Path, **given: str) -> RunPlan:
    scenario = by_name("gpu-fault")
    values = parameter_values(scenario, {"namespace": "team-a", "target": "dgd/llm", **given})
    return RunPlan(
        scenario=scenario,
        values=values,
        name="gpu-fault-abcde",
        evidence=tmp_path,
        uid="uid-1",
        kubeconfig=tmp_path / "kubeconfig",
        namespace="team-a",
        node_root=lambda node: tmp_path / "nodes" / node,
    )


def test_run_names_are_unique_label_values() -> None:
    names = {run_name("gpu-fault") for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith("gpu-fault-") and n == n.lower() and len(n) == len("gpu-fault-") + 5 for n in names)


def test_parameters_default_and_override() -> None:
    values = parameter_values(by_name("gpu-fault"), {"xid": "48"})
    assert values["xid"] == "48"
    assert values["namespace"] == by_name("gpu-fault").parameter("namespace").default


@pytest.mark.parametrize(
    "given, message",
    [
        ({"no-such": "1"}, "has no parameter no-such"),
        ({"xid": "0"}, "xid='0' is not one of"),
        ({"dgd-version": "v2"}, "dgd-version='v2' is not one of"),
    ],
)
def test_bad_parameters_are_refused(given: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parameter_values(by_name("gpu-fault"), given)


def test_assignments_need_a_name_and_an_equals_sign() -> None:
    assert parse_assignments(("xid=79", "target=dgd/a=b")) == {"xid": "79", "target": "dgd/a=b"}
    with pytest.raises(BadInput):
        parse_assignments(("xid",))


def test_preflight_gets_the_run_identity_and_its_own_outputs_dir(tmp_path: Path) -> None:
    p = plan(tmp_path, xid="79")
    argv = p.argv(p.scenario.stage("preflight"))
    assert argv[:2] == ["step", "preflight"]
    pairs = dict(zip(argv[2::2], argv[3::2]))
    assert pairs["--run-id"] == "gpu-fault-abcde"
    assert pairs["--workflow-uid"] == "uid-1"
    assert pairs["--namespace"] == "team-a" and pairs["--xid"] == "79"
    assert pairs["--outputs-dir"] == str(tmp_path / "preflight")
    # Not pinned to a node: the toggle directory is the node's path, recorded as is.
    assert pairs["--toggle-dir"] == "/var/lib/faultflow"


def test_a_node_pinned_stage_sees_host_paths_under_its_node_root(tmp_path: Path) -> None:
    p = plan(tmp_path)
    # gpu-fault pins the node stages to the node inject-cuda-shim confirmed after its rollout.
    (tmp_path / "inject-cuda-shim").mkdir()
    (tmp_path / "inject-cuda-shim" / "node").write_text("gpu-node-2\n")
    argv = p.argv(p.scenario.stage("inject-xid"))
    pairs = dict(zip(argv[2::2], argv[3::2]))
    root = tmp_path / "nodes" / "gpu-node-2"
    assert pairs["--kmsg-path"] == str(root / "dev/kmsg")
    assert pairs["--toggle-dir"] == str(root / "var/lib/faultflow")
    assert pairs["--proc-root"] == str(root / "proc")


def test_an_output_an_earlier_stage_did_not_write_is_an_infrastructure_error(tmp_path: Path) -> None:
    p = plan(tmp_path)
    with pytest.raises(InfrastructureError, match="did not write its output node"):
        p.argv(p.scenario.stage("inject-xid"))


def test_without_node_filesystems_a_pinned_stage_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace

    p = replace(plan(tmp_path), node_root=None)
    (tmp_path / "inject-cuda-shim").mkdir()
    (tmp_path / "inject-cuda-shim" / "node").write_text("n1")
    with pytest.raises(BadInput, match="runs on node n1"):
        p.argv(p.scenario.stage("inject-xid"))


def test_mutex_names_take_parameter_values(tmp_path: Path) -> None:
    p = plan(tmp_path)
    assert set(p.mutexes()) == {m.replace("{namespace}", "team-a") for m in p.scenario.mutexes}
    assert all("{" not in m for m in p.mutexes())
