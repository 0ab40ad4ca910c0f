"""How a pod's paths map onto this machine, as the lab's kubelet simulator (and the local runner)
run a container here instead of in a container runtime.

A container sees its volumes at their `mountPath`s and its image's files at their image paths. Here a
hostPath volume is the node's directory under `.lab/nodes/<node>/` (the simulated node's root
filesystem), an emptyDir is a directory of the pod, and an image path is a directory the lab prepared
for that image. Every argument or environment value that starts with such a path (or, for
environment values, every `:`-separated element of a path list such as LD_PRELOAD) is rewritten to
the local directory. Pure functions: no files are touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PathMap:
    """Container path → local path; the longest matching prefix wins."""

    entries: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, mapping: dict[str, Path | str]) -> PathMap:
        items = {k.rstrip("/") or "/": str(v) for k, v in mapping.items()}
        return cls(tuple(sorted(items.items(), key=lambda kv: len(kv[0]), reverse=True)))

    def path(self, value: str) -> str:
        """`value` with its leading mapped path replaced; unchanged when no entry is a prefix of it."""
        for inside, local in self.entries:
            if value == inside or value.startswith(inside + "/"):
                return local + value[len(inside) :]
        return value

    def env_value(self, value: str) -> str:
        return ":".join(self.path(part) for part in value.split(":"))


def node_path(node_root: Path, host_path: str) -> Path:
    """A node's host path (`/dev/kmsg`, `/var/lib/faultflow`) inside the simulated node's root."""
    return node_root / host_path.lstrip("/")


def volume_map(container: dict, volumes: list[dict], node_root: Path, pod_dir: Path) -> dict[str, Path]:
    """mountPath → local directory for the container's hostPath and emptyDir mounts (others are not
    simulated and stay unmapped)."""
    by_name = {v["name"]: v for v in volumes or []}
    out: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        volume = by_name.get(mount["name"]) or {}
        if "hostPath" in volume:
            out[mount["mountPath"]] = node_path(node_root, volume["hostPath"]["path"])
        elif "emptyDir" in volume:
            out[mount["mountPath"]] = pod_dir / "volumes" / mount["name"]
    return out


@dataclass(frozen=True)
class LocalCommand:
    argv: list[str]
    env: dict[str, str]


def translate(container: dict, paths: PathMap) -> LocalCommand:
    """The container's command+args and env (plain `value`s only) with every mapped path rewritten."""
    argv = [paths.path(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    env = {e["name"]: paths.env_value(str(e.get("value", ""))) for e in container.get("env") or [] if "valueFrom" not in e}
    return LocalCommand(argv=argv, env=env)
