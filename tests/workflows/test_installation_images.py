"""Issue 15 items 2 and 15: the images are installation configuration. Every place deploy/ names an
image is one kustomize's `images:` override rewrites (the field specs of kustomizeconfig.yaml), the
steps take their images from ConfigMap faultflow-config (deploy/config.yaml), and every scenario
parameter repeating an image is handed to preflight, which refuses any other value. Item 9: the node
agent's stages run the node-agent image, also under the one override."""

from __future__ import annotations

import pytest
import yaml

from steps.run import install
from workflows.cli import render_files
from workflows.render import scenario_template
from workflows.scenarios import SCENARIOS
from workflows.stages.common import NODE_AGENT_IMAGE, SHIM_IMAGE, STEPS_IMAGE, TOGGLE_DIR_PATH

IMAGES = (STEPS_IMAGE, SHIM_IMAGE, NODE_AGENT_IMAGE)


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
    assert config["data"] == {
        install.STEPS_IMAGE: STEPS_IMAGE,
        install.SHIM_IMAGE: SHIM_IMAGE,
        install.NODE_AGENT_IMAGE: NODE_AGENT_IMAGE,
        install.TOGGLE_DIR: TOGGLE_DIR_PATH,
    }


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
    args = janitor["spec"]["templates"][0]["container"]["args"]
    assert "--steps-image" not in args and "--node-agent-image" not in args


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_item7_ttl_default_outlives_the_workflow_deadline(scenario):
    """The janitor must not revert a run Argo still lets run: the run's TTL is at least the Workflow's
    activeDeadlineSeconds (and the janitor asks the Workflow's phase first, test_janitor_triggers)."""
    from steps.options import parse_duration

    spec = scenario_template(scenario).to_dict()["spec"]
    ttl = next(p["value"] for p in spec["arguments"]["parameters"] if p["name"] == "ttl")
    assert parse_duration(ttl) >= spec["activeDeadlineSeconds"], (scenario.name, ttl, spec["activeDeadlineSeconds"])


# Placeholder registry under the reserved `.invalid` domain: never a real host.
OVERRIDE = {
    "faultflow-steps": ("mirror.invalid/faultflow/steps", "sha256:" + "a" * 64),
    "faultflow-shim": ("mirror.invalid/faultflow/shim", "sha256:" + "b" * 64),
    "faultflow-node-agent": ("mirror.invalid/faultflow/node-agent", "sha256:" + "e" * 64),
}
# The node agent's stages (privileged, on the node): they run the node-agent image.
NODE_STAGES = {("gpu-fault", "inject-xid"), ("xid-only", "inject-xid"), ("cuda-only", "toggle-on")}


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_item15_one_images_override_changes_every_reference_in_the_kustomize_built_base(tmp_path):
    """Issue 15 item 15: `kustomize build` of deploy/ (what `kubectl apply -k` applies) with one
    `images:` override (a qualified name and a digest) leaves no reference to the shipped images:
    every step container of every template (the janitor's and the nightly suite's included), every
    image parameter default and ConfigMap faultflow-config name the overridden, digest-pinned image."""
    from tests.support.kustomize import build

    base = tmp_path / "deploy"
    for path, text in render_files().items():
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        (base / path).write_text(text)
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    kustomization["images"] = [{"name": name, "newName": new, "digest": digest} for name, (new, digest) in OVERRIDE.items()]
    (base / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    docs = [doc for doc in yaml.safe_load_all(build(base)) if isinstance(doc, dict)]
    expected = {f"{new}@{digest}" for new, digest in OVERRIDE.values()}
    steps_ref = "{}@{}".format(*OVERRIDE["faultflow-steps"])
    agent_ref = "{}@{}".format(*OVERRIDE["faultflow-node-agent"])
    leftovers = [(doc["kind"], doc["metadata"]["name"], s) for doc in docs for s in _strings(doc) if s in IMAGES]
    assert leftovers == []
    images: dict[str, list[str]] = {}
    node_stages: dict[tuple[str, str], str] = {}
    for doc in docs:
        spec = doc.get("spec") or {}
        workflow = spec.get("workflowSpec", spec) if doc["kind"] in ("WorkflowTemplate", "CronWorkflow") else {}
        for template in workflow.get("templates") or []:
            if "container" in template:
                images.setdefault(doc["metadata"]["name"], []).append(template["container"]["image"])
                if template["container"].get("securityContext", {}).get("privileged"):
                    node_stages[(doc["metadata"]["name"], template["name"])] = template["container"]["image"]
        for parameter in (workflow.get("arguments") or {}).get("parameters") or []:
            if parameter["name"] in ("steps-image", "shim-image"):
                assert parameter["value"] in expected, (doc["metadata"]["name"], parameter)
    assert {"janitor", "nightly-resilience", "gpu-fault", "cuda-only", "xid-only"} <= set(images)
    assert {image for found in images.values() for image in found} == {steps_ref, agent_ref}
    assert node_stages == dict.fromkeys(NODE_STAGES, agent_ref)
    assert sum(found.count(agent_ref) for found in images.values()) == len(NODE_STAGES)
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == install.CONFIG_NAME)
    assert (config["data"][install.STEPS_IMAGE], config["data"][install.SHIM_IMAGE], config["data"][install.NODE_AGENT_IMAGE]) == tuple(
        f"{new}@{digest}" for new, digest in OVERRIDE.values()
    )


@pytest.mark.parametrize(
    "reference, entry",
    [
        ("faultflow-steps:0.1.0", {"name": "faultflow-steps", "newTag": "0.1.0"}),
        ("faultflow-steps@sha256:" + "c" * 64, {"name": "faultflow-steps", "digest": "sha256:" + "c" * 64}),
        (
            "mirror.invalid:5000/team/faultflow-steps:1.2@sha256:" + "d" * 64,
            {"name": "mirror.invalid:5000/team/faultflow-steps", "newTag": "1.2", "digest": "sha256:" + "d" * 64},
        ),
        ("mirror.invalid:5000/faultflow-steps", {"name": "mirror.invalid:5000/faultflow-steps"}),
    ],
)
def test_item15_the_kustomization_pins_qualified_and_digest_references_as_written(reference, entry):
    """Issue 15 item 15: the shipped `images:` entry of a digest-pinned or registry-qualified reference
    (the old split at the last `:` made `faultflow-steps@sha256` a name and a registry port a tag)."""
    from workflows.deploy import image_entry

    assert image_entry(reference) == entry
