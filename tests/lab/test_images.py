"""The lab's image builder follows the product's Dockerfiles (lab.images.product, lab.images.dockerfile):
the images it built (`make test` builds them before pytest; here they come from the cache) carry the
user, entry point, environment and file paths the Dockerfiles name, and the steps image's user is
the toggle's owner the steps give the shim's init container."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from lab.images import build, product
from lab.images.dockerfile import final_stage
from steps.gpu.toggle_pod import TOGGLE_UID, toggle_owner
from steps.workload import shim_patch

REPO = Path(__file__).resolve().parents[2]


def image_config(image: build.Image) -> dict:
    """The OCI config (`config` part: User, Entrypoint, Env) of a built image, from its tar."""
    with tarfile.open(image.tar) as outer:

        def blob(digest: str) -> dict:
            handle = outer.extractfile(f"./blobs/sha256/{digest.split(':', 1)[1]}")
            assert handle is not None
            return json.loads(handle.read())

        index = json.loads(outer.extractfile("./index.json").read())  # type: ignore[union-attr]
        assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [image.tag]
        manifest = blob(index["manifests"][0]["digest"])
        return blob(manifest["config"]["digest"])["config"]


def test_the_steps_dockerfile_user_is_the_toggles_owner():
    stage = final_stage(product.STEPS_DOCKERFILE)
    assert stage.user == str(TOGGLE_UID)
    assert [(a.name, a.uid) for a in stage.accounts] == [("faultflow", TOGGLE_UID)]
    assert toggle_owner() == f"{TOGGLE_UID}:{TOGGLE_UID}"


def test_the_shim_dockerfile_puts_install_sh_where_the_init_container_calls_it():
    stage = final_stage(product.SHIM_DOCKERFILE)
    assert stage.copy_to("install.sh") == shim_patch.INSTALL_SCRIPT
    assert stage.entrypoint == ("/bin/sh", shim_patch.INSTALL_SCRIPT)


DOCKERFILES = {
    "faultflow-steps": product.STEPS_DOCKERFILE,
    "faultflow-shim": product.SHIM_DOCKERFILE,
    "faultflow-node-agent": product.NODE_AGENT_DOCKERFILE,
}


@pytest.mark.parametrize(
    "ensure", [product.ensure_steps, product.ensure_shim, product.ensure_node_agent], ids=["steps", "shim", "node-agent"]
)
def test_the_built_image_has_the_dockerfiles_user_entry_point_and_environment(ensure):
    image = ensure()
    dockerfile = DOCKERFILES[image.name]
    stage = final_stage(dockerfile)
    config = image_config(image)
    assert config["User"] == stage.user
    assert tuple(config["Entrypoint"]) == stage.entrypoint
    assert set(stage.env_list) <= set(config["Env"])


def test_the_shim_image_holds_the_libraries_and_install_sh_at_the_dockerfiles_paths():
    image = product.ensure_shim()
    stage = final_stage(product.SHIM_DOCKERFILE)
    assert product.base_file(image, stage.copy_to("install.sh").lstrip("/")) == (REPO / "images/shim/install.sh").read_bytes()
    for library in ("libfaultflow_cuda.so", "libfaultflow_nvml.so"):
        assert product.base_file(image, stage.copy_to(library).lstrip("/"))[:4] == b"\x7fELF"


def test_the_steps_image_has_the_user_its_entry_point_and_the_wheel_alone():
    image = product.ensure_steps()
    passwd = product.base_file(image, "etc/passwd").decode()
    assert f"faultflow:x:{TOGGLE_UID}:{TOGGLE_UID}:" in passwd and passwd.startswith("root:x:0:0:")  # the base's, plus ours
    script = product.base_file(image, "usr/local/bin/faultflow").decode()
    assert script.startswith("#!/usr/bin/python3\n") and "from steps.cli import run" in script
    installed = product.base_file(image, "usr/share/faultflow/python-packages.txt").decode().split()
    assert "faultflow==0.1.0" in installed and "click==8.5.1" in installed
    assert not [p for p in installed if p.split("==")[0].lower() in ("hera", "pytest", "hypothesis")]


def test_the_dockerfile_reader_refuses_what_the_lab_builder_does_not_reproduce(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM a AS build\nRUN true\n\nFROM b\nVOLUME /data\nUSER 1\n")
    with pytest.raises(ValueError, match="VOLUME"):
        final_stage(dockerfile)


def _files(image: build.Image) -> set[str]:
    """Every file path of every layer of a built image."""
    names = set()
    with tarfile.open(image.tar) as outer:
        index = json.loads(outer.extractfile("./index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(outer.extractfile(f"./blobs/sha256/{index['manifests'][0]['digest'].split(':', 1)[1]}").read())  # type: ignore[union-attr]
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=outer.extractfile(f"./blobs/sha256/{layer['digest'].split(':', 1)[1]}"), mode="r|*") as inner:
                try:
                    for member in inner:
                        if member.isfile():
                            names.add(member.name.lstrip("./"))
                except tarfile.ReadError:  # umoci's layers end without tar's end-of-archive blocks
                    pass
    return names


def test_the_node_agent_image_holds_its_dockerfiles_files_and_no_cluster_client():
    """Issue 15 item 9: the build-context files at the Dockerfile's paths, byte for byte, click from
    the build stage, the steps image's account; no Kubernetes or HTTP client, matplotlib or numpy in
    any layer, and under /opt/faultflow nothing but click and those files."""
    image = product.ensure_node_agent()
    stage = final_stage(product.NODE_AGENT_DOCKERFILE)
    copied = {}
    for item in stage.copies:
        for source in item.sources if not item.stage else ():
            destination = item.destination + Path(source).name if item.destination.endswith("/") else item.destination
            copied[destination.lstrip("/")] = source
            assert product.base_file(image, destination.lstrip("/")) == (REPO / source).read_bytes(), source
    files = _files(image)
    ours = {f for f in files if f.startswith("opt/faultflow/") and "__pycache__" not in f}
    assert {f for f in ours if not f.startswith("opt/faultflow/click/")} == {f for f in copied if f.startswith("opt/faultflow/")}
    assert "opt/faultflow/click/core.py" in ours
    assert not [f for f in files if {"kubernetes", "httpx", "matplotlib", "numpy", "yaml"} & set(Path(f).parts)]
    passwd = product.base_file(image, "etc/passwd").decode()
    assert f"faultflow:x:{TOGGLE_UID}:{TOGGLE_UID}:" in passwd and passwd.startswith("root:x:0:0:")
