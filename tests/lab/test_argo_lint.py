"""The real `argo lint --offline` (both Argo lines we render for) over small manifest sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.argo_lint import ARGO_VERSIONS, lint_offline

pytestmark = pytest.mark.parametrize("argo", ARGO_VERSIONS)

# A two-task DAG whose second task consumes the first one's output parameter.
TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata:
  name: lint-demo
spec:
  entrypoint: main
  arguments:
    parameters:
      - name: node
        value: gpu-node-1
  templates:
    - name: main
      dag:
        tasks:
          - name: preflight
            template: {first_template}
            arguments:
              parameters:
                - name: what
                  value: "{{{{workflow.parameters.node}}}}"
          - name: inject
            template: step
            depends: preflight
            arguments:
              parameters:
                - name: what
                  value: "{{{{tasks.preflight.outputs.parameters.result}}}}"
    - name: step
      inputs:
        parameters:
          - name: what
      outputs:
        parameters:
          - name: result
            valueFrom:
              path: /tmp/result
      container:
        image: busybox:1.36
        command: [sh, -c]
        args: ["echo {{{{inputs.parameters.{echoed}}}}} > /tmp/result"]
"""

CRON = """\
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata:
  name: nightly-lint-demo
spec:
  schedules: ["0 2 * * *"]
  concurrencyPolicy: Forbid
  workflowSpec:
    workflowTemplateRef:
      name: {template}
"""

# What deploy/ holds besides Argo objects; the lint must skip them, not fail on them.
OTHER_OBJECTS = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  name: faultflow-steps
"""
KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [template.yaml, serviceaccount.yaml]
"""


def _template(first_template: str = "step", echoed: str = "what") -> str:
    return TEMPLATE.format(first_template=first_template, echoed=echoed)


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_a_valid_dag_template_passes(tmp_path, argo):
    result = lint_offline([_write(tmp_path, {"template.yaml": _template()})], argo_version=argo)
    assert result.ok, result.output


def test_an_unresolved_input_reference_fails(tmp_path, argo):
    result = lint_offline([_write(tmp_path, {"template.yaml": _template(echoed="nope")})], argo_version=argo)
    assert not result.ok
    assert "inputs.parameters.nope" in result.output and "lint-demo" in result.output


def test_a_task_naming_a_missing_template_fails(tmp_path, argo):
    files = {"template.yaml": _template(first_template="no-such-step")}
    result = lint_offline([_write(tmp_path, files)], argo_version=argo)
    assert not result.ok
    assert "no-such-step" in result.output


def test_a_cron_workflow_referencing_a_template_in_the_set_passes(tmp_path, argo):
    files = {"template.yaml": _template(), "cron.yaml": CRON.format(template="lint-demo")}
    result = lint_offline([_write(tmp_path, files)], argo_version=argo)
    assert result.ok, result.output


def test_a_cron_workflow_referencing_a_template_outside_the_set_fails(tmp_path, argo):
    files = {"template.yaml": _template(), "cron.yaml": CRON.format(template="not-rendered")}
    result = lint_offline([_write(tmp_path, files)], argo_version=argo)
    assert not result.ok
    assert "not-rendered" in result.output and "nightly-lint-demo" in result.output


def test_references_resolve_across_the_given_paths(tmp_path, argo):
    templates = _write(tmp_path / "templates", {"template.yaml": _template()})
    crons = _write(tmp_path / "crons", {"cron.yaml": CRON.format(template="lint-demo")})
    assert lint_offline([crons], argo_version=argo).ok is False
    result = lint_offline([templates, crons], argo_version=argo)
    assert result.ok, result.output


def test_non_argo_objects_in_a_deploy_folder_are_skipped(tmp_path, argo):
    files = {
        "template.yaml": _template(),
        "serviceaccount.yaml": OTHER_OBJECTS,
        "kustomization.yaml": KUSTOMIZATION,
    }
    result = lint_offline([_write(tmp_path, files)], argo_version=argo)
    assert result.ok, result.output


def test_a_set_without_argo_objects_fails(tmp_path, argo):
    result = lint_offline([_write(tmp_path, {"serviceaccount.yaml": OTHER_OBJECTS})], argo_version=argo)
    assert not result.ok
    assert "nothing to lint" in result.output


def test_unknown_argo_line_is_refused(tmp_path, argo):
    with pytest.raises(ValueError):
        lint_offline([tmp_path], argo_version=argo + ".99")
