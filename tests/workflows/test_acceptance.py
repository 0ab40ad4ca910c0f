"""The real kube-apiserver with Argo's full CRDs (v4.0 and v3.7) accepts every rendered template and
CronWorkflow, and every committed deploy/ object (strict field validation: a misspelt field fails)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lab import kube as lab_kube
from lab.controlplane import ClusterSpec
from lab.rest import ApiError
from tests.workflows.deployed import collection, create
from workflows.cli import render_files

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ARGO_SETS = ("v4.0", "v3.7")


def argo_documents() -> list[dict]:
    docs = []
    for path, text in render_files().items():
        if path.startswith(("templates/", "cron/")):
            docs.extend(yaml.safe_load_all(text))
    return docs


@pytest.mark.parametrize("argo", ARGO_SETS)
def test_rendered_templates_and_cronworkflows_are_accepted(argo, control_plane, new_namespace):
    cluster = control_plane.cluster(ClusterSpec(argo=argo))
    ns = new_namespace(cluster)
    rest = cluster.rest()
    kinds = []
    for doc in argo_documents():
        created = create(rest, doc, namespace=ns)
        assert created["metadata"]["name"] == doc["metadata"]["name"]
        # What the server stored is what we sent: nothing was pruned as unknown.
        assert created["spec"] == doc["spec"], doc["metadata"]["name"]
        kinds.append(doc["kind"])
    # five scenarios, and the janitor and nightly suite the CronWorkflows reference (templateReferencing: Strict)
    assert kinds.count("WorkflowTemplate") == 7 and kinds.count("CronWorkflow") == 2


@pytest.mark.parametrize("argo", ARGO_SETS)
def test_a_misspelt_field_is_rejected(argo, control_plane, new_namespace):
    """The acceptance test can fail: the same object with one typo is refused."""
    cluster = control_plane.cluster(ClusterSpec(argo=argo))
    ns = new_namespace(cluster)
    doc = copy.deepcopy(next(d for d in argo_documents() if d["kind"] == "WorkflowTemplate"))
    doc["spec"]["templates"][0]["nodeSelectr"] = {"a": "b"}
    with pytest.raises(ApiError) as error:
        create(cluster.rest(), doc, namespace=ns)
    assert error.value.status in (400, 422) and "nodeSelectr" in error.value.body


def _committed() -> list[dict]:
    docs = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name in ("kustomization.yaml", "kustomizeconfig.yaml"):
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def accepted(rest, doc: dict) -> dict:
    """A strict dry-run create; where an earlier test in this shared cluster already installed the
    object (faultflow's config), a strict dry-run replace validates the same document."""
    try:
        return create(rest, doc, dry_run=True)
    except ApiError as error:
        if error.status != 409:
            raise
    path = f"{collection(doc)}/{doc['metadata']['name']}"
    live = rest.get(path)
    body = {**doc, "metadata": {**doc["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
    return rest.put(path + "?fieldValidation=Strict&dryRun=All", body)


@pytest.mark.parametrize("argo", ARGO_SETS)
def test_every_committed_deploy_object_is_accepted(argo, control_plane):
    cluster = control_plane.cluster(ClusterSpec(argo=argo))
    rest = cluster.rest()
    docs = _committed()
    namespaces = sorted({d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")})
    made = []
    for name in namespaces:  # the target and NVSentinel namespaces exist where deploy/ is applied
        try:
            rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            made.append(name)
        except ApiError as error:
            assert error.status == 409
    try:
        for doc in docs:
            if doc["kind"] == "Namespace":
                continue
            assert accepted(rest, doc)["kind"] == doc["kind"]
    finally:
        for name in made:
            lab_kube.delete_namespace(cluster, name)
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = {p for p in kustomization["resources"]}
    on_disk = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.yaml")} - {"kustomization.yaml", "kustomizeconfig.yaml"}
    # deploy/argo/: Argo's own controller configuration to merge (README "Who can do what"), not a resource.
    assert listed == {p for p in on_disk if not p.startswith("argo/")}
