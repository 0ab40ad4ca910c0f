"""The parts of real Argo in the lab that need no cluster: the argoexec build fix-up, the kustomize
subset over Argo's own manifests and the lab's changes to them, the artifact repository's objects.
(The Argo module is fetched from the Go module cache; `make real-lab-tools` has it there.)"""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from lab import gomod, tools
from lab.argo import artifacts, manifests
from lab.argo.s3 import S3
from lab.gomod import Module


def test_argoexec_is_built_with_its_dropped_symlink_restored(tmp_path):
    source = tmp_path / "mod" / "workflow" / "executor" / "osspecific"
    source.mkdir(parents=True)
    (source / "signal_darwin.go").write_text("package osspecific // setpgid\n")
    module = Module("example.org/m", "v1.0.0", tmp_path / "mod", tmp_path / "mod" / "go.mod")
    gomod.copy_with_placeholders(module, tmp_path / "copy", (), tools.ARGO_LINES["v4.0"].executor.symlinks)
    restored = tmp_path / "copy" / "workflow" / "executor" / "osspecific" / "signal_linux.go"
    assert restored.read_text() == "package osspecific // setpgid\n" and not restored.is_symlink()
    # Once upstream ships the file, the fix-up must go rather than overwrite it.
    with pytest.raises(RuntimeError, match="drop the symlink fix-up"):
        gomod.copy_with_placeholders(
            Module("example.org/m", "v1.0.0", tmp_path / "copy", tmp_path / "go.mod"),
            tmp_path / "again",
            (),
            tools.ARGO_LINES["v4.0"].executor.symlinks,
        )


def test_each_argo_line_has_controller_and_executor_at_the_cli_version():
    for line, cli in tools.ARGO_CLIS.items():
        argo = tools.ARGO_LINES[line]
        for tool in (argo.controller, argo.executor):
            assert (tool.module, tool.version, tool.ziphash, tool.link_vars) == (cli.module, cli.version, cli.ziphash, cli.link_vars)
        assert argo.controller.package.endswith("/cmd/workflow-controller") and argo.executor.package.endswith("/cmd/argoexec")
        assert tools.by_name("argoexec") in tools.TOOLS


def test_the_kustomize_subset_refuses_what_it_does_not_implement(tmp_path):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["a.yaml"], "patches": [{"path": "p.yaml"}]}))
    with pytest.raises(ValueError, match=r"\['patches'\]"):
        manifests.build(tmp_path)


def test_the_kustomize_subset_sets_the_namespace_like_kustomize(tmp_path):
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "argo"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "b"},
         "subjects": [{"kind": "ServiceAccount", "name": "argo"}, {"kind": "Group", "name": "g"}]},
    ]  # fmt: skip
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "objects.yaml").write_text(yaml.safe_dump_all(objects))
    (tmp_path / "sub" / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["objects.yaml"]}))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["sub"], "namespace": "argo"}))
    sa, binding = manifests.build(tmp_path)
    assert sa["metadata"]["namespace"] == "argo"
    assert "namespace" not in binding["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argo", "namespace": "argo"}, {"kind": "Group", "name": "g"}]


@pytest.mark.parametrize("line", sorted(tools.ARGO_LINES))
def test_the_lab_changes_only_the_images_and_the_documented_controller_settings(line):
    shipped = manifests.install_objects(line)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in shipped}
    assert ("Deployment", "workflow-controller") in kinds and ("ClusterRole", "argo-cluster-role") in kinds
    assert ("CustomResourceDefinition", "workflows.argoproj.io") in kinds
    assert not any("argo-server" in name for _, name in kinds)  # the Server is not run yet
    images = manifests.images_of(line)
    lab = manifests.for_lab(shipped, images)
    deployment = next(o for o in lab if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == images.controller
    assert container["args"][container["args"].index("--executor-image") + 1] == images.executor
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LEADER_ELECTION_DISABLE"] == "true" and env["DEFAULT_REQUEUE_TIME"] == "1s"
    # Everything else is exactly what Argo ships.
    undo = copy.deepcopy(lab)
    undone = next(o for o in undo if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    original = next(o for o in shipped if o["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for key in ("image", "args", "env"):
        undone[key] = original.get(key)
        if original.get(key) is None:
            del undone[key]
    assert json.dumps(undo, sort_keys=True) == json.dumps(shipped, sort_keys=True)


def test_the_default_artifact_repository_is_argos_documented_configmap():
    repo = artifacts.ArtifactRepository(S3("http://127.0.0.1:1", "AK", "SK"), "10.250.0.1:7070", "bucket", data=None)  # type: ignore[arg-type]
    secret, configmap = artifacts.namespace_objects(repo, "ns")
    assert configmap["metadata"]["name"] == "artifact-repositories"
    key = configmap["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"]
    s3 = yaml.safe_load(configmap["data"][key])["s3"]
    assert (s3["bucket"], s3["endpoint"], s3["insecure"]) == ("bucket", "10.250.0.1:7070", True)
    assert secret["metadata"]["name"] == s3["accessKeySecret"]["name"] == s3["secretKeySecret"]["name"]
    assert secret["stringData"][s3["accessKeySecret"]["key"]] == "AK" and secret["stringData"][s3["secretKeySecret"]["key"]] == "SK"


def test_the_lab_installs_faultflow_with_an_overlay_that_changes_only_the_images(tmp_path):
    """lab.argo.faultflow's overlay over the committed deploy/ (what `kubectl apply -k` applies): every
    object of the base as shipped, every image reference the lab's, nothing else changed."""
    from lab.argo import faultflow
    from lab.images import product
    from tests.support.kustomize import build

    shipped = [d for d in yaml.safe_load_all(build(faultflow.DEPLOY)) if d]
    replaced = {"faultflow-steps": product.steps_image(), "faultflow-shim": product.shim_image()}
    lab = [d for d in yaml.safe_load_all(build(faultflow.overlay(tmp_path / "overlay", replaced))) if d]
    renamed = json.dumps(shipped)
    for name, image in replaced.items():
        renamed = renamed.replace(f'"{name}:0.1.0"', f'"{image.ref}"')
    assert renamed != json.dumps(shipped)  # the base names the images it ships
    assert json.loads(renamed) == lab
