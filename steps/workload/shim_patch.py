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
import json
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
# The shim record kept on the patched object itself (issue 15 item 8), set and removed in the same
# patch as the shim: a deleted ledger must not leave an orphan nobody can undo exactly. It holds the
# run id, faultflow's namespace and the record (names we added, the original values of the four env
# variables we replaced) — never the object, never any other env value.
SHIM_ANNOTATION = "faultflow.dev/shim"


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


ENV_NAMES = tuple(e["name"] for e in worker_env(ShimConfig("", 0, "/")))


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


def remove_shim(obj: dict, record: ShimRecord, container: str | None = None, found: list[Component] | None = None) -> dict:
    """The object with exactly what `record` added taken away; anything else (replicas, other env,
    changes by other writers since) is left as it is. Safe on an object that was never patched.
    `found`: the object's components when they are not a workload's (a DaemonSet's containers)."""
    new = copy.deepcopy(obj)
    by_name = {c.name: c for c in (found if found is not None else components(new, container))}
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


@dataclass(frozen=True)
class ShimMark:
    """What the patched object carries about our patch (annotation `faultflow.dev/shim`)."""

    run_id: str
    home: str  # faultflow's namespace, where the run's ledger lives (or lived)
    record: ShimRecord
    container: str | None = None

    def to_annotation(self) -> str:
        body = {"run": self.run_id, "home": self.home, "container": self.container, "record": self.record.to_dict()}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_object(cls, obj: dict) -> ShimMark | None:
        """The object's mark; None when it carries none. BadInput when it is not one we could have written."""
        text = o.annotations_of(obj).get(SHIM_ANNOTATION)
        if text is None:
            return None
        try:
            body = json.loads(text)
            record = ShimRecord.from_dict(body["record"])
            mark = cls(body["run"], body["home"], record, body.get("container"))
            typed = all(isinstance(v, str) for v in (mark.run_id, mark.home, record.kind))
            typed = typed and (mark.container is None or isinstance(mark.container, str))
            typed = typed and all(
                isinstance(c.name, str)
                and isinstance(c.created, list)
                and isinstance(c.appended, dict)
                and isinstance(c.replaced, dict)
                and isinstance(c.written, dict)
                for c in record.components
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            typed = False
        if not typed:
            raise BadInput(f"annotation {SHIM_ANNOTATION} of {o.name(obj)} is not a shim record faultflow wrote")
        return mark


def _key(*parts) -> str:
    return "/".join(str(p) for p in parts)


def foreign_items(obj: dict, record: ShimRecord, container: str | None = None) -> list[str]:
    """What `record` names that `apply_shim` never adds to `obj` (a forged or stale record). Taking it
    away could touch the user's own containers, volumes or env: a revert refuses such a record whole."""
    if record.kind != workload_kind(obj):
        return [f"kind {record.kind} (the object is {workload_kind(obj)})"]
    by_name = {c.name: c for c in components(obj, container)}
    problems = []
    for rec in record.components:
        comp = by_name.get(rec.name)
        if comp is None:
            continue  # removal skips a component that is gone
        allowed = {
            _key(*comp.pod_spec, "volumes"): {LIB_VOLUME, TOGGLE_VOLUME},
            _key(*comp.pod_spec, "initContainers"): {INIT_NAME},
            _key(*comp.main, "volumeMounts"): {LIB_VOLUME, TOGGLE_VOLUME},
            _key(*comp.main, "env"): set(ENV_NAMES),
        }
        for key, names in rec.appended.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not set(names) <= allowed.get(key, set()):
                problems.append(f"{rec.name}: {key} {names!r}")
        # Maps/lists we create on the way to those four lists (never a list item: _ensure refuses).
        prefixes = {_key(*k.split("/")[:i]) for k in allowed for i in range(1, len(k.split("/")) + 1)}
        problems += [f"{rec.name}: created {key!r}" for key in rec.created if key not in prefixes]
        for key, original in rec.replaced.items():
            name = key[len("env/") :] if isinstance(key, str) and key.startswith("env/") else None
            written = rec.written.get(key)
            named = name in ENV_NAMES and all(isinstance(i, dict) and i.get("name") == name for i in (original, written))
            if not named:
                problems.append(f"{rec.name}: replaced {key!r}")
            elif (
                name == "LD_PRELOAD"
                and isinstance(written, dict)
                and written.get("value") != f"{LIB_DIR}/{LIB_NAME}:{original.get('value')}"
            ):
                problems.append(f"{rec.name}: LD_PRELOAD {original.get('value')!r} is not what our patch replaced")
        problems += [f"{rec.name}: written {key!r}" for key in rec.written if key not in rec.replaced]
    return problems


def with_owner(obj: dict, run_id: str | None, mark: ShimMark | None = None) -> dict:
    """Sets (run_id, with the shim's `mark`) or clears (None: both) our annotations on a copy."""
    new = copy.deepcopy(obj)
    meta = new.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    if run_id is None:
        annotations.pop(OWNER_ANNOTATION, None)
        annotations.pop(SHIM_ANNOTATION, None)
    else:
        annotations[OWNER_ANNOTATION] = run_id
        if mark is not None:
            annotations[SHIM_ANNOTATION] = mark.to_annotation()
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return new


def owner(obj: dict) -> str | None:
    return o.annotations_of(obj).get(OWNER_ANNOTATION)
