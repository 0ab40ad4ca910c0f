"""The committed deploy/ passes the real `argo lint --offline` of every Argo version we render for
(built from source, lab/tools.py), and the same lint fails once a reference in it is broken — so a
pass means the templates were really read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from lab.argo_lint import ARGO_VERSIONS, lint_offline

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def argo_objects(directory: Path) -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(directory.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("WorkflowTemplate", "CronWorkflow"):
                out.append((path, doc))
    return out


def test_deploy_has_every_scenario_and_schedule() -> None:
    from workflows.scenarios import SCENARIOS

    names = {(doc["kind"], doc["metadata"]["name"]) for _, doc in argo_objects(DEPLOY)}
    assert {("WorkflowTemplate", s.name) for s in SCENARIOS} <= names
    assert {("CronWorkflow", "nightly-resilience"), ("CronWorkflow", "janitor")} <= names


@pytest.mark.parametrize("argo_version", ARGO_VERSIONS)
def test_deploy_passes_argo_lint(argo_version: str) -> None:
    result = lint_offline([str(DEPLOY)], argo_version=argo_version)
    assert result.ok, result.output


@pytest.mark.parametrize("argo_version", ARGO_VERSIONS)
def test_a_broken_reference_in_deploy_fails_lint(tmp_path: Path, argo_version: str) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    path = next(p for p, doc in argo_objects(copy) if doc["metadata"]["name"] == "gpu-fault")
    text = path.read_text()
    # An input parameter the XID pod's template does not declare (`workflow.parameters.*` is not a
    # lint error: a submit may add global parameters).
    assert "{{inputs.parameters.inject-cuda-shim-node}}" in text
    path.write_text(text.replace("{{inputs.parameters.inject-cuda-shim-node}}", "{{inputs.parameters.no-such-parameter}}", 1))
    result = lint_offline([str(copy)], argo_version=argo_version)
    assert not result.ok
    assert "no-such-parameter" in result.output
