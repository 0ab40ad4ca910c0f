"""What the CUDA shim adds to a workload's GPU workers, and taking exactly that away again, as pure
functions over the workload's dict (no API calls here; `steps.workload.shim_inject` does those).

For each GPU worker (`steps.workload.dynamo.gpu_workers`) the pod spec gets the shim's init container
and its two volumes, and the main container the mounts and the environment that preload the library.
What was added is described by a `ShimRecord` (stored in the run ledger) so the removal is exact:
items we appended go, values we replaced come back, containers (maps/lists) we had to create go when
they are empty again. The result of `remove_shim(apply_shim(x))` is `x`, byte for byte.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from steps.errors import BadInput
from steps.gpu import toggle
from steps.gpu.toggle_pod import toggle_owner
from steps.kube import jsonpatch
from steps.kube import objects as o
from steps.workload.dynamo import Component, components, gpu_workers, value_at, workload_kind

INIT_NAME = "faultflow-shim-init"
LIB_VOLUME = "faultflow-shim"
TOGGLE_VOLUME = "faultflow-toggle"
LIB_DIR = "/opt/faultflow-shim"
LIB_NAME = "libfaultflow_cuda.so"
INSTALL_SCRIPT = "/opt/faultflow/install.sh"  # the shim image's init command (images/shim/install.sh)
INIT_TOGGLE_MOUNT = "/faultflow-toggle"
OWNER_ANNOTATION = "faultflow.dev/run"


@dataclass(frozen=True)
class ShimConfig:
    image: str
    xid: int
    toggle_dir: str
    container: str | None = None  # main container of a plain Deployment/StatefulSet

    @property
    def toggle_file(self) -> str:
        return toggle.file_in(self.toggle_dir)


@dataclass
class ComponentRecord:
    """What was done to one component: enough to undo it exactly."""

    name: str
    created: list[str] = field(default_factory=list)  # paths (relative to the component) we created
    appended: dict[str, list[str]] = field(default_factory=dict)  # relative list path → item names we added
    replaced: dict[str, dict] = field(default_factory=dict)  # "env/<NAME>" → original env item
    written: dict[str, dict] = field(default_factory=dict)  # "env/<NAME>" → the item we wrote


@dataclass
class ShimRecord:
    kind: str  # dgd-v1alpha1 | dgd-v1beta1 | deployment | statefulset
    components: list[ComponentRecord]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ShimRecord:
        return cls(kind=data["kind"], components=[ComponentRecord(**c) for c in data["components"]])


# The init container's own securityContext, so the workload's pod-level one (runAsNonRoot, runAsUser:
# N) does not decide it: the toggle directory is a hostPath the kubelet creates root-owned 0755, so
# creating the file there takes uid 0. That root is held to what the job needs: no capability but
# CHOWN (to hand the file to the steps image's user, who switches the fault off), no privilege
# escalation, a read-only image. The worker containers keep the workload's own context.
INIT_SECURITY_CONTEXT = {
    "runAsUser": 0,
    "runAsGroup": 0,
    "runAsNonRoot": False,
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"], "add": ["CHOWN"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Copies two small files: requests and limits, so a namespace whose ResourceQuota demands them admits it.
INIT_RESOURCES = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}


def init_container(cfg: ShimConfig) -> dict:
    # The image's own install command copies the library and creates the toggle switched off only
    # when it is missing, so a fault already on stays on when a pod restarts; the file belongs to
    # the steps image's user (steps.gpu.toggle_pod says why).
    return {
        "name": INIT_NAME,
        "image": cfg.image,
        "command": ["/bin/sh", INSTALL_SCRIPT, LIB_DIR, toggle.file_in(INIT_TOGGLE_MOUNT), toggle_owner()],
        "volumeMounts": [
            {"name": LIB_VOLUME, "mountPath": LIB_DIR},
            # Read-write only here: the init container creates the file; workers map it read-only.
            {"name": TOGGLE_VOLUME, "mountPath": INIT_TOGGLE_MOUNT},
        ],
        "securityContext": copy.deepcopy(INIT_SECURITY_CONTEXT),
        "resources": copy.deepcopy(INIT_RESOURCES),
    }


def volumes(cfg: ShimConfig) -> list[dict]:
    return [
        {"name": LIB_VOLUME, "emptyDir": {}},
        {"name": TOGGLE_VOLUME, "hostPath": {"path": cfg.toggle_dir, "type": "DirectoryOrCreate"}},
    ]


def worker_mounts(cfg: ShimConfig) -> list[dict]:
    return [
        {"name": LIB_VOLUME, "mountPath": LIB_DIR, "readOnly": True},
        {"name": TOGGLE_VOLUME, "mountPath": cfg.toggle_dir, "readOnly": True},
    ]


def worker_env(cfg: ShimConfig) -> list[dict]:
    return [
        {"name": "LD_PRELOAD", "value": f"{LIB_DIR}/{LIB_NAME}"},
        {"name": "CUDA_FAULT_INJECTION_ENABLED", "value": "0"},
        {"name": "CUDA_XID_TYPE", "value": str(cfg.xid)},
        {"name": "FAULTFLOW_TOGGLE_FILE", "value": cfg.toggle_file},
    ]


def is_injected(obj: dict, comp: Component) -> bool:
    inits = value_at(obj, [*comp.base, *comp.pod_spec, "initContainers"]) or []
    return any(c.get("name") == INIT_NAME for c in inits)


def _ensure(doc: dict, rel: tuple, record: ComponentRecord, leaf_factory) -> Any:
    """Walks/creates the relative path; records each map/list we create so removal can drop it."""
    node = doc
    for depth, token in enumerate(rel):
        last = depth == len(rel) - 1
        if isinstance(node, list):
            if not isinstance(token, int) or not 0 <= token < len(node):
                raise BadInput(f"{'/'.join(str(t) for t in rel[:depth])} has no item {token}: faultflow patches an existing main container")
            node = node[token]
            continue
        if token not in node or node[token] is None:
            if not last and isinstance(rel[depth + 1], int):
                # A list item (the main container) cannot be made up: a map {"0": …} is what JSON patch
                # would write, and a container without an image is not one. Refuse, change nothing.
                raise BadInput(
                    f"{'/'.join(str(t) for t in rel[: depth + 1])} is missing: give the component a main "
                    "container (podTemplate.spec.containers with one named main) for faultflow to patch"
                )
            node[token] = leaf_factory() if last else {}
            record.created.append("/".join(str(t) for t in rel[: depth + 1]))
        node = node[token]
    return node


def _append_named(doc: dict, rel: tuple, items: list[dict], record: ComponentRecord) -> None:
    target = _ensure(doc, rel, record, list)
    key = "/".join(str(t) for t in rel)
    names = {i.get("name") for i in target}
    for item in items:
        if item["name"] in names:
            raise BadInput(f"{key} already has an item named {item['name']!r} that faultflow did not add")
        target.append(copy.deepcopy(item))
        record.appended.setdefault(key, []).append(item["name"])


def _set_env(doc: dict, rel: tuple, items: list[dict], record: ComponentRecord) -> None:
    env = _ensure(doc, rel, record, list)
    key = "/".join(str(t) for t in rel)
    for item in items:
        index = next((i for i, e in enumerate(env) if e.get("name") == item["name"]), None)
        if index is None:
            env.append(copy.deepcopy(item))
            record.appended.setdefault(key, []).append(item["name"])
            continue
        original = env[index]
        new = copy.deepcopy(item)
        if item["name"] == "LD_PRELOAD" and original.get("value"):
            new["value"] = f"{item['value']}:{original['value']}"  # keep the user's own preload
        elif "valueFrom" in original and item["name"] == "LD_PRELOAD":
            raise BadInput("LD_PRELOAD is set from a reference (valueFrom); faultflow cannot chain its shim onto it")
        record.replaced[f"env/{item['name']}"] = copy.deepcopy(original)
        record.written[f"env/{item['name']}"] = copy.deepcopy(new)
        env[index] = new


def apply_shim(obj: dict, cfg: ShimConfig) -> tuple[dict, ShimRecord]:
    """The object with the shim added to every GPU worker not yet injected, and what was added."""
    new = copy.deepcopy(obj)
    record = ShimRecord(kind=workload_kind(obj), components=[])
    for comp in gpu_workers(obj, cfg.container):
        if is_injected(obj, comp):
            continue
        body = value_at(new, comp.base)
        rec = ComponentRecord(name=comp.name)
        _append_named(body, (*comp.pod_spec, "volumes"), volumes(cfg), rec)
        _append_named(body, (*comp.pod_spec, "initContainers"), [init_container(cfg)], rec)
        _append_named(body, (*comp.main, "volumeMounts"), worker_mounts(cfg), rec)
        _set_env(body, (*comp.main, "env"), worker_env(cfg), rec)
        record.components.append(rec)
    return new, record


def _rel_tokens(key: str, comp: Component) -> list:
    tokens: list = []
    for part in key.split("/"):
        tokens.append(int(part) if part.isdigit() and tokens and tokens[-1] == "containers" else part)
    return tokens


def remove_shim(obj: dict, record: ShimRecord, container: str | None = None) -> dict:
    """The object with exactly what `record` added taken away; anything else (replicas, other env,
    changes by other writers since) is left as it is. Safe on an object that was never patched."""
    new = copy.deepcopy(obj)
    by_name = {c.name: c for c in components(new, container)}
    for rec in record.components:
        comp = by_name.get(rec.name)
        if comp is None:
            continue  # the component was removed by someone else: nothing of ours is left in it
        body = value_at(new, comp.base)
        for key, names in rec.appended.items():
            target = value_at(body, _rel_tokens(key, comp))
            if isinstance(target, list):
                target[:] = [i for i in target if i.get("name") not in names]
        for key, original in rec.replaced.items():
            env = value_at(body, [*comp.main, "env"])
            name = key.split("/", 1)[1]
            for index, item in enumerate(env or []):
                # Only a value we wrote is ours to restore; someone else's later value stays.
                if item.get("name") == name and item == rec.written.get(key):
                    env[index] = copy.deepcopy(original)
        for key in reversed(rec.created):
            tokens = _rel_tokens(key, comp)
            parent = value_at(body, tokens[:-1])
            if isinstance(parent, dict) and tokens[-1] in parent and parent[tokens[-1]] in ({}, [], None):
                del parent[tokens[-1]]
    return new


def patch_ops(old: dict, new: dict) -> list[dict]:
    """JSON patch from old to new, guarded by resourceVersion so a concurrent writer makes it fail
    (and the caller re-reads) instead of being overwritten. Covers spec and our owner annotation."""
    ops = jsonpatch.diff(old.get("spec"), new.get("spec"), "/spec")
    # None (no annotations map) and {} differ here: the patch must add or remove the map itself.
    old_ann = o.meta(old).get("annotations")
    new_ann = o.meta(new).get("annotations")
    if old_ann != new_ann:
        if old_ann is None:
            ops.append({"op": "add", "path": "/metadata/annotations", "value": new_ann})
        elif new_ann is None:
            ops.append({"op": "remove", "path": "/metadata/annotations"})
        else:
            ops.extend(jsonpatch.diff(old_ann, new_ann, "/metadata/annotations"))
    if not ops:
        return []
    rv = o.resource_version(old)
    guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}] if rv else []
    return guard + ops


def with_owner(obj: dict, run_id: str | None) -> dict:
    """Sets (run_id) or clears (None) our owner annotation on a copy."""
    new = copy.deepcopy(obj)
    meta = new.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    if run_id is None:
        annotations.pop(OWNER_ANNOTATION, None)
    else:
        annotations[OWNER_ANNOTATION] = run_id
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return new


def owner(obj: dict) -> str | None:
    return o.annotations_of(obj).get(OWNER_ANNOTATION)
