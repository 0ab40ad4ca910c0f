"""Argo's own install manifests, read from the pinned module, with the lab's changes only.

`kustomize build manifests/cluster-install` is what Argo documents for a cluster-wide install. No
kustomize binary is built here, and those kustomizations use two of its fields only (`resources`
and `namespace`), so `build` implements exactly those and refuses any other field: a later Argo
release that needs more fails loudly instead of installing something different.

What the lab changes (`for_lab`), and nothing else:
* the images: `localhost/workflow-controller:<version>` for the controller, and the executor image
  through the controller's documented `--executor-image` flag, `localhost/argoexec:<version>`;
* the controller's environment, two settings Argo documents for its own tests:
  `LEADER_ELECTION_DISABLE=true` (one replica, no Lease round-trips before it starts working) and
  `DEFAULT_REQUEUE_TIME=1s` (the default 10 s stretches a two-step workflow from ~5 s to ~21 s).
* the Argo Server's entries (`../base/argo-server`, `./argo-server-rbac`) are left out for now: the
  lab runs the controller only; the Server is the next step (its image would be the `argo` CLI).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab import gomod, tools

NAMESPACE = "argo"  # what cluster-install's kustomization sets
INSTALL = "manifests/cluster-install"
LEFT_OUT = ("../base/argo-server", "./argo-server-rbac")
# Argo's quick-start grants the executor these in each namespace workflows run in (emissary).
EXECUTOR_RBAC = (
    "manifests/quick-start/base/executor/emissary/executor-role.yaml",
    "manifests/quick-start/base/executor-default-rolebinding.yaml",
)
CONTROLLER_ENV = (("LEADER_ELECTION_DISABLE", "true"), ("DEFAULT_REQUEUE_TIME", "1s"))
_KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "namespace"}
# Kinds the namespace transformer leaves alone (cluster-scoped).
_CLUSTER_KINDS = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "Namespace"}


@dataclass(frozen=True)
class Images:
    controller: str
    executor: str


def module_dir(line: str) -> Path:
    """The pinned Argo module of one line (`v3.7`, `v4.0`) in the Go module cache."""
    cli = tools.ARGO_CLIS[line]
    module = gomod.download(cli.module, cli.version, no_sum_check=cli.ziphash is not None)
    if cli.ziphash:
        gomod.verify_ziphash(module, cli.ziphash)
    return module.dir


def build(folder: Path, skip: tuple[str, ...] = ()) -> list[dict]:
    """`kustomize build folder` for kustomizations made of `resources` and `namespace` only;
    `skip`: resource entries (as written in any kustomization on the way) to leave out."""
    doc = yaml.safe_load((folder / "kustomization.yaml").read_text())
    if unknown := set(doc) - _KUSTOMIZE_FIELDS:
        raise ValueError(f"{folder}/kustomization.yaml uses {sorted(unknown)}, which lab.argo.manifests does not implement")
    objects: list[dict] = []
    for entry in doc.get("resources", []):
        if entry in skip:
            continue
        path = (folder / entry).resolve()
        objects += build(path, skip) if path.is_dir() else load(path)
    if namespace := doc.get("namespace"):
        for obj in objects:
            _set_namespace(obj, namespace)
    return objects


def load(path: Path) -> list[dict]:
    return [obj for obj in yaml.safe_load_all(path.read_text()) if obj]


def _set_namespace(obj: dict, namespace: str) -> None:
    """kustomize's namespace transformer: namespaced objects, and ServiceAccount subjects of bindings."""
    if obj["kind"] not in _CLUSTER_KINDS:
        obj["metadata"]["namespace"] = namespace
    if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
        for subject in obj.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace


def install_objects(line: str) -> list[dict]:
    """Argo's cluster install (CRDs, controller, its RBAC) as the module ships it, unchanged."""
    return build(module_dir(line) / INSTALL, skip=LEFT_OUT)


def executor_rbac(line: str, namespace: str) -> list[dict]:
    """Argo's quick-start executor Role and its binding to the namespace's `default` ServiceAccount."""
    root = module_dir(line)
    objects = [obj for rel in EXECUTOR_RBAC for obj in load(root / rel)]
    for obj in objects:
        _set_namespace(obj, namespace)
    return objects


def images_of(line: str) -> Images:
    version = tools.ARGO_LINES[line].controller.version
    return Images(controller=f"localhost/workflow-controller:{version}", executor=f"localhost/argoexec:{version}")


def for_lab(objects: list[dict], images: Images) -> list[dict]:
    """The same objects with the lab's changes (module docstring); the controller's Deployment must be there."""
    changed = copy.deepcopy(objects)
    deployments = [o for o in changed if o["kind"] == "Deployment" and o["metadata"]["name"] == "workflow-controller"]
    if len(deployments) != 1:
        raise ValueError(f"expected one workflow-controller Deployment in Argo's manifests, found {len(deployments)}")
    (container,) = [c for c in deployments[0]["spec"]["template"]["spec"]["containers"] if c["name"] == "workflow-controller"]
    container["image"] = images.controller
    container["args"] = _with_flag(list(container.get("args") or []), "--executor-image", images.executor)
    env = [e for e in container.get("env", []) if e["name"] not in dict(CONTROLLER_ENV)]
    container["env"] = env + [{"name": name, "value": value} for name, value in CONTROLLER_ENV]
    return changed


def _with_flag(args: list[str], flag: str, value: str) -> list[str]:
    """`args` with `flag value` set: its value replaced where the manifest already passes it."""
    if flag in args:
        args[args.index(flag) + 1] = value
        return args
    if any(a.startswith(flag + "=") for a in args):
        return [f"{flag}={value}" if a.startswith(flag + "=") else a for a in args]
    return [*args, flag, value]
