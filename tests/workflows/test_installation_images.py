"""Issue 15 items 2 and 15: the images are installation configuration. Every place deploy/ names an
image is one kustomize's `images:` override rewrites (the field specs of kustomizeconfig.yaml), the
steps take their images from ConfigMap faultflow-config (deploy/config.yaml), and every scenario
parameter repeating an image is handed to preflight, which refuses any other value."""

from __future__ import annotations

import pytest
import yaml

from steps.run import install
from workflows.cli import render_files
from workflows.render import scenario_template
from workflows.scenarios import SCENARIOS
from workflows.stages.common import SHIM_IMAGE, STEPS_IMAGE, TOGGLE_DIR_PATH

IMAGES = (STEPS_IMAGE, SHIM_IMAGE)


def _docs(files: dict[str, str]) -> list[tuple[str, dict]]:
    return [
        (path, doc)
        for path, text in files.items()
        if path not in ("kustomization.yaml", "kustomizeconfig.yaml")
        for doc in yaml.safe_load_all(text)
        if isinstance(doc, dict)
    ]


def _image_paths(node, path=()) -> list[tuple[str, ...]]:
    """Paths (list indices dropped, as kustomize field specs write them) of every string naming an image."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _image_paths(v, (*path, k))]
    if isinstance(node, list):
        return [p for v in node for p in _image_paths(v, path)]
    return [path] if isinstance(node, str) and node in IMAGES else []


def test_item2_every_image_reference_is_one_kustomize_images_rewrites():
    files = render_files()
    specs = {(s["kind"], tuple(s["path"].split("/"))) for s in yaml.safe_load(files["kustomizeconfig.yaml"].split("\n", 1)[1])["images"]}
    builtin = {("Pod", ("spec", "containers", "image"))}  # kustomize's own field specs cover core kinds' containers
    missed = [
        (path, doc["kind"], "/".join(p)) for path, doc in _docs(files) for p in _image_paths(doc) if (doc["kind"], p) not in specs | builtin
    ]
    assert missed == []
    kustomization = yaml.safe_load(files["kustomization.yaml"].split("\n", 1)[1])
    assert {i["name"] for i in kustomization["images"]} == {i.rpartition(":")[0] for i in IMAGES}
    assert "config.yaml" in kustomization["resources"]


def test_item2_the_configmap_carries_the_installed_images_and_toggle_dir():
    config = yaml.safe_load(render_files()["config.yaml"].split("\n", 1)[1])
    assert config["metadata"]["name"] == install.CONFIG_NAME
    assert config["data"] == {install.STEPS_IMAGE: STEPS_IMAGE, install.SHIM_IMAGE: SHIM_IMAGE, install.TOGGLE_DIR: TOGGLE_DIR_PATH}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_item2_image_parameters_reach_preflight(scenario):
    spec = scenario_template(scenario).to_dict()["spec"]
    parameters = {p["name"] for p in spec["arguments"]["parameters"]}
    preflight = next(t for t in spec["templates"] if t["name"] == "preflight")["container"]["args"]
    for name in ("steps-image", "shim-image"):
        if name in parameters:
            assert f"--{name}" in preflight and "{{workflow.parameters." + name + "}}" in preflight, (scenario.name, name)


def test_item2_the_janitor_takes_no_image_argument():
    janitor = yaml.safe_load(render_files()["templates/janitor.yaml"].split("\n", 1)[1])
    assert "--steps-image" not in janitor["spec"]["templates"][0]["container"]["args"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_item7_ttl_default_outlives_the_workflow_deadline(scenario):
    """The janitor must not revert a run Argo still lets run: the run's TTL is at least the Workflow's
    activeDeadlineSeconds (and the janitor asks the Workflow's phase first, test_janitor_triggers)."""
    from steps.options import parse_duration

    spec = scenario_template(scenario).to_dict()["spec"]
    ttl = next(p["value"] for p in spec["arguments"]["parameters"] if p["name"] == "ttl")
    assert parse_duration(ttl) >= spec["activeDeadlineSeconds"], (scenario.name, ttl, spec["activeDeadlineSeconds"])
