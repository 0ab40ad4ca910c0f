"""No rendered object may ask for hostPID (`faultflow render` refuses it).

Argo's emissary executor up to v4.0.x forwards a signal it receives (a template deadline, `argo stop`,
a pod deletion) to pid -1 — Go's `Process.Release()` leaves that pid behind — i.e. to every process
the container may signal. A privileged container sharing the node's PID namespace would signal every
process on the GPU node: the inference servers, the kubelet, NVSentinel. Argo fixed it in v4.1.0,
which a cluster may not run, so no template asks for hostPID at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

KEY = "hostPID"


def _walk(obj: Any, where: str) -> Iterator[str]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            here = f"{where}.{key}" if where else str(key)
            if key == KEY:
                yield here
            elif key == "podSpecPatch" and isinstance(value, str) and KEY in value:
                # A patch is JSON or YAML text, and its value may be an Argo expression resolved at
                # run time: any mention counts as asking.
                yield here
            else:
                yield from _walk(value, here)
    elif isinstance(obj, list):
        for index, item in enumerate(obj):
            label = item.get("name", index) if isinstance(item, dict) else index
            yield from _walk(item, f"{where}[{label}]")


def host_pid_requests(objects: dict[str, dict]) -> list[str]:
    """`<path>: <field>` for every place an object (by its deploy/ path) asks for hostPID."""
    return sorted(f"{path}: {field}" for path, obj in objects.items() for field in _walk(obj.get("spec", {}), "spec"))
