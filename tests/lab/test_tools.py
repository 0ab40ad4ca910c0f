"""The build recipe and CRD plumbing, without building or starting anything."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lab import crds, gomod, prepare, tools
from lab.dgd_v1beta1 import derive_v1beta1
from lab.gomod import Module
from lab.seeds import seed_key

KUBE_GO_MOD = """module k8s.io/kubernetes

go 1.25.0

require (
\tgithub.com/spf13/cobra v1.10.2
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apiserver => ./staging/src/k8s.io/apiserver
\tgithub.com/example/fork => github.com/example/fork v1.2.3
)

replace go.etcd.io/etcd/api/v3 => ../api
"""


def test_local_replaces_are_the_sibling_modules_only(tmp_path):
    go_mod = tmp_path / "go.mod"
    go_mod.write_text(KUBE_GO_MOD)
    assert gomod.local_replaces(go_mod) == ["k8s.io/api", "k8s.io/apiserver", "go.etcd.io/etcd/api/v3"]


def test_wrapper_requires_the_pin_and_replaces_siblings_with_published_versions(tmp_path):
    go_mod = tmp_path / "go.mod"
    go_mod.write_text(KUBE_GO_MOD)
    module = Module("k8s.io/kubernetes", "v1.37.2", tmp_path, go_mod)
    text = gomod.wrapper_go_mod(module, "v0.37.2", extra=(("example.org/x", "example.org/y v1.0.0"),))
    assert "require k8s.io/kubernetes v1.37.2" in text
    assert "\tk8s.io/api => k8s.io/api v0.37.2" in text
    assert "\tk8s.io/apiserver => k8s.io/apiserver v0.37.2" in text
    assert "\texample.org/x => example.org/y v1.0.0" in text
    assert "./staging" not in text and "github.com/example/fork" not in text


def test_a_changed_recipe_means_a_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("FAULTFLOW_CACHE", str(tmp_path))
    tool = tools.by_name("etcd")
    tool.dir.mkdir(parents=True)
    tool.binary.write_text("")
    (tool.dir / "recipe.json").write_text(tool.recipe)
    assert tool.is_built()
    changed = dataclasses.replace(tool, link_vars=(("main.x", "y"),))
    assert changed.dir == tool.dir and not changed.is_built()


def test_missing_go_is_one_line_saying_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(gomod.GoMissing) as err:
        gomod.go_binary()
    assert "\n" not in str(err.value) and "install Go" in str(err.value)


def _crd(*versions: str) -> dict:
    return {
        "metadata": {"name": "things.example.org"},
        "spec": {
            "group": "example.org",
            "versions": [{"name": v, "served": True, "storage": v == versions[0]} for v in versions],
            "conversion": {"strategy": "Webhook"},
        },
    }


def test_single_version_serves_and_stores_one_version_without_webhook():
    out = crds.single_version(_crd("v1alpha1", "v1beta1"), "v1beta1")
    assert [(v["name"], v["served"], v["storage"]) for v in out["spec"]["versions"]] == [("v1beta1", True, True)]
    assert "conversion" not in out["spec"]
    with pytest.raises(KeyError):
        crds.single_version(_crd("v1alpha1"), "v2")


def test_derived_v1beta1_keys_components_by_name_and_reuses_the_real_pod_spec():
    alpha = crds.dgd_crd("v1alpha1")
    beta = derive_v1beta1(alpha)
    (version,) = beta["spec"]["versions"]
    components = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["components"]
    assert version["name"] == "v1beta1" and components["x-kubernetes-list-map-keys"] == ["name"]
    pod_spec = components["items"]["properties"]["podTemplate"]["properties"]["spec"]
    alpha_pod_spec = alpha["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["services"][
        "additionalProperties"
    ]["properties"]["extraPodSpec"]
    assert pod_spec["properties"]["containers"] == alpha_pod_spec["properties"]["containers"]


def test_seed_key_follows_crd_content():
    first = [_crd("v1")]
    second = [_crd("v1", "v2")]
    assert seed_key(first) == seed_key([_crd("v1")]) != seed_key(second)


def test_unknown_cluster_choices_are_refused():
    with pytest.raises(ValueError):
        crds.dgd_crd("v2")
    with pytest.raises(ValueError):
        crds.cluster_crds("v1beta1", "v9")


def test_an_unset_later_field_keeps_existing_recipes():
    # etcd and kube-apiserver builds (and the seeds keyed by them) predate `placeholders` and `symlinks`.
    fields = dataclasses.asdict(tools.ETCD)
    del fields["placeholders"], fields["symlinks"]
    assert json.loads(tools.ETCD.recipe) == json.loads(json.dumps(fields))
    argo = json.loads(tools.ARGO_CLI_V3_7.recipe)
    assert argo["placeholders"] == ["ui/dist/app/index.html"]


def test_placeholders_are_added_to_a_writable_copy_of_the_module(tmp_path):
    source = tmp_path / "mod"
    (source / "ui").mkdir(parents=True)
    (source / "go.mod").write_text("module example.org/m\n")
    (source / "ui" / "embed.go").write_text("package ui\n")
    for path in (source / "ui" / "embed.go", source / "go.mod", source / "ui", source):
        path.chmod(0o555 if path.is_dir() else 0o444)  # as in the Go module cache
    module = Module("example.org/m", "v1.0.0", source, source / "go.mod")
    try:
        gomod.copy_with_placeholders(module, tmp_path / "copy", ("ui/dist/app/index.html",))
    finally:
        for path in (source, source / "ui"):
            path.chmod(0o755)
    copy = tmp_path / "copy"
    assert (copy / "ui" / "embed.go").read_text() == "package ui\n"
    assert (copy / "ui" / "dist" / "app" / "index.html").read_bytes() == b""
    assert not (source / "ui" / "dist").exists()


def test_every_pinned_argo_cli_is_listed(capsys):
    assert prepare.main(["list"]) == 0
    rows = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()]
    assert ["argo", "v3.7.18"] in rows and ["argo", "v4.0.5"] in rows


def test_building_an_unknown_tool_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        prepare.main(["build", "kwok"])
    assert exit_.value.code == 2 and "unknown tool kwok" in capsys.readouterr().err


def test_kubectl_and_kustomize_are_built_before_pytest_with_the_api_server_s_release():
    """`kubectl apply -k` (lab.argo.faultflow) talks to the lab's API server: the same Kubernetes
    release, no client/server skew; kustomize is in the lists `make` builds before pytest, so no test
    pays a first build."""
    assert tools.KUBECTL.version == tools.KUBE_APISERVER.version and tools.KUBECTL.module == tools.KUBE_APISERVER.module
    assert tools.KUBECTL.package == "k8s.io/kubernetes/cmd/kubectl"
    assert tools.KUSTOMIZE in tools.ENVTEST_TOOLS and tools.KUBECTL in tools.REAL_CLUSTER_TOOLS
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "lab.prepare build kube-scheduler kube-proxy kube-controller-manager kubelet coredns kubectl" in makefile
