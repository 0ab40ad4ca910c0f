"""DRIVER SIMULATOR, its /proc part in containers: an OCI prestart hook of the lab's GPU nodes.

The real NVIDIA driver's tree `/proc/driver/nvidia/gpus/<bus id>/information` is kernel procfs, so
every container on a GPU node sees it in its own fresh /proc (`inject-xid --proc-root /proc` reads
it there). The lab's driver tree is a tmpfs over the node's /proc/driver (lab.nodes.node), which a
container's new procfs mount does not show. This hook, run by runc after the container's mounts are
made and before it switches root (so the node's /proc/driver is still reachable in the container's
mount namespace), binds the node's tree read-only over the container's /proc/driver. runc refuses
such a mount in the spec itself (a destination inside /proc), which is why NVIDIA's own container
toolkit also adjusts /proc/driver/nvidia from a hook.

`python -m lab.nodes.driver_proc` reads the OCI state (pid, bundle) on stdin, as runc hands it over.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DRIVER_TREE = Path("/proc/driver/nvidia")
REPO = Path(__file__).resolve().parents[2]


def base_spec(hook_argv: list[str]) -> dict:
    """containerd's default OCI spec (`ctr oci spec`, the same containerd as the node's) with the hook
    added: what the node's CRI starts every container from (`base_runtime_spec`)."""
    spec = json.loads(subprocess.run(["ctr", "oci", "spec"], check=True, capture_output=True, text=True).stdout)
    # runc gives a hook no environment: the lab's package and the tools it calls by name.
    env = [f"PYTHONPATH={REPO}", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]
    spec["hooks"] = {"prestart": [{"path": hook_argv[0], "args": hook_argv, "env": env}]}
    return spec


def hook_argv() -> list[str]:
    return [sys.executable, "-m", "lab.nodes.driver_proc"]


def bind_into(pid: int, rootfs: Path) -> None:
    target = rootfs / "proc" / "driver"
    enter = ["nsenter", f"--target={pid}", "--mount", "--"]
    subprocess.run([*enter, "mount", "--rbind", "/proc/driver", str(target)], check=True)
    subprocess.run([*enter, "mount", "-o", "remount,bind,ro", str(target)], check=True)


def main() -> int:
    state = json.load(sys.stdin)
    if not DRIVER_TREE.is_dir():  # a CPU node: no driver, nothing to show
        return 0
    bundle = Path(state["bundle"])
    root = Path(json.loads((bundle / "config.json").read_text())["root"]["path"])
    bind_into(int(state["pid"]), root if root.is_absolute() else bundle / root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
