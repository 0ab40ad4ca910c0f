"""Issue 15 item 5: the nightly suite fails when a child scenario fails.

Argo's controller is not available here, so this tests (a) the rendered structure — the scenario
loop goes on after a failed or errored child (`continueOn`), then a gate step runs `faultflow step
suite-gate` — and (b) the gate's logic, run with the rendered gate's own command line, over child
Workflows made from the rendered child manifest, in the real kube-apiserver (the Workflow CRD is
installed in every lab cluster), each given the phase Argo's controller would give it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import yaml

from steps.kube.client import Ref, connect
from steps.run.install import NAMESPACE_ENV
from tests.support.cluster_world import FAULTFLOW
from workflows.cli import render_files

WORKFLOWS = ("argoproj.io/v1alpha1", "workflows")


def _nightly() -> tuple[dict, dict]:
    files = render_files(nightly=("gpu-fault", "xid-only", "network-partition"))
    return (
        yaml.safe_load(files["templates/nightly-resilience.yaml"].split("\n", 1)[1]),
        yaml.safe_load(files["cron/nightly-resilience.yaml"].split("\n", 1)[1]),
    )


def _substitute(text: str, values: dict[str, str]) -> str:
    """Argo's template tags as its controller resolves them: `{{name}}` by plain text, and the
    expression tags the suite uses, `{{=toJson(name)}}` / `{{=toJson(name + 'lit')}}`, by JSON-encoding
    the value (Argo's expression function toJson, util/expr/env)."""

    def expression(match: re.Match) -> str:
        value = values[match.group(1)] + (match.group(2) or "")
        return json.dumps(value)

    text = re.sub(r"\{\{=toJson\(([a-z.]+)(?: \+ '([^']*)')?\)\}\}", expression, text)
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, text
    return text


def test_item5_rendered_suite_goes_on_after_a_failed_child_then_gates():
    template, cron = _nightly()
    assert cron["spec"]["workflowSpec"] == {
        "arguments": {"parameters": [{"name": "scenarios", "value": '["gpu-fault", "xid-only", "network-partition"]'}]},
        "workflowTemplateRef": {"name": "nightly-resilience"},
    }
    by_name = {t["name"]: t for t in template["spec"]["templates"]}
    groups = by_name["suite"]["steps"]
    assert [[s["name"] for s in g] for g in groups] == [["scenario"], ["gate"]]
    scenario, gate = groups[0][0], groups[1][0]
    assert scenario["continueOn"] == {"failed": True, "error": True}
    assert "continueOn" not in gate and "when" not in gate  # the gate always runs, and its failure is the suite's
    assert by_name["gate"]["container"]["command"] == ["faultflow", "step", "suite-gate"]
    child = json.loads(
        _substitute(by_name["run-scenario"]["resource"]["manifest"], {"inputs.parameters.scenario": "gpu-fault", "workflow.uid": "uid-1"})
    )
    assert child["metadata"]["labels"]["faultflow.dev/suite-run"] == "uid-1"


def _run_gate(kubeconfig: str, home: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PYTHONPATH": str(Path.cwd()), NAMESPACE_ENV: home}
    return subprocess.run(FAULTFLOW + args, capture_output=True, text=True, env=env, timeout=120)


def test_item5_a_failing_child_fails_the_suite(cluster, new_namespace):
    template, _ = _nightly()
    by_name = {t["name"]: t for t in template["spec"]["templates"]}
    manifest = by_name["run-scenario"]["resource"]["manifest"]
    gate = by_name["gate"]["container"]
    scenarios = json.loads(template["spec"]["arguments"]["parameters"][0]["value"])
    home = new_namespace(cluster)
    kube = connect(str(cluster.kubeconfig))
    workflows = Ref(*WORKFLOWS, home, "")

    def suite(uid: str, phases: dict[str, str]) -> subprocess.CompletedProcess:
        """Children as the rendered resource template creates them, with the controller's phases, then the gate."""
        for name, phase in phases.items():
            child = json.loads(_substitute(manifest, {"inputs.parameters.scenario": name, "workflow.uid": uid}))
            child["metadata"]["name"] = f"{name}-{uid}"
            del child["metadata"]["generateName"]
            child["status"] = {"phase": phase}
            kube.create(workflows, child)
        values = {"workflow.uid": uid, "workflow.parameters.scenarios": json.dumps(scenarios)}
        argv = [_substitute(a, values) for a in gate["command"][1:] + gate["args"]]
        return _run_gate(str(cluster.kubeconfig), home, argv)

    passed = suite("u-pass", dict.fromkeys(scenarios, "Succeeded"))
    assert passed.returncode == 0, passed.stderr
    failed = suite("u-fail", {"gpu-fault": "Succeeded", "xid-only": "Failed", "network-partition": "Succeeded"})
    assert failed.returncode == 1 and "xid-only" in failed.stderr and len(failed.stderr.strip().splitlines()) == 1
    errored = suite("u-error", {"gpu-fault": "Error", "xid-only": "Succeeded", "network-partition": "Succeeded"})
    assert errored.returncode == 1 and "gpu-fault" in errored.stderr
    missing = suite("u-missing", {"gpu-fault": "Succeeded", "xid-only": "Succeeded"})  # one never started
    assert missing.returncode == 1 and "network-partition" in missing.stderr
    # Another suite run's failed child is not this one's.
    assert suite("u-pass2", dict.fromkeys(scenarios, "Succeeded")).returncode == 0


def test_item5_gate_bad_input_is_refused(cluster, new_namespace):
    home = new_namespace(cluster)
    for scenarios in ("[]", "gpu-fault", '{"a": 1}', '[""]'):
        result = _run_gate(str(cluster.kubeconfig), home, ["step", "suite-gate", "--suite-run", "u", "--scenarios", scenarios])
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, (scenarios, result.stderr)


def test_item5_render_refuses_an_empty_nightly(tmp_path):
    out = tmp_path / "deploy"
    for nightly in ("", " , "):
        result = subprocess.run(
            FAULTFLOW + ["render", "--out", str(out), "--nightly", nightly],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
            timeout=120,
        )
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not out.exists()  # nothing written


def test_low_item_a_scenarios_item_cannot_add_fields_to_the_child_workflow():
    """Issue 15, Low: the `scenarios` parameter's items were spliced into the child's JSON manifest as
    text, so an item could add fields (another service account, a pod spec). Now each is one JSON
    string value: the child has exactly the fields we render, and the item is just a (bad) name."""
    template, _ = _nightly()
    manifest = next(t for t in template["spec"]["templates"] if t["name"] == "run-scenario")["resource"]["manifest"]
    forged = 'gpu-fault"}, "serviceAccountName": "faultflow-janitor", "x": {"y": "'
    child = json.loads(_substitute(manifest, {"inputs.parameters.scenario": forged, "workflow.uid": "u1"}))
    assert set(child) == {"apiVersion", "kind", "metadata", "spec"}
    assert child["spec"] == {"workflowTemplateRef": {"name": forged}}
    assert child["metadata"]["generateName"] == forged + "-nightly-"
