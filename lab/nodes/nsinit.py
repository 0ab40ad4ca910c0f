"""PID 1 of a lab node's namespaces: sets up the node's private mounts, then holds them.

Started as `unshare --net --mount --pid --fork --kill-child --mount-proc --propagation private
python -m lab.nodes.nsinit SPEC.json`: a fresh network, mount and PID namespace whose init this is.
Everything of the node (containerd, kubelet, kube-proxy, shims, containers) is later started inside
with `nsenter -t <this pid>`; when this process dies the kernel kills every process of the node's PID
namespace, its network namespace goes with its last process and its mounts with the mount namespace:
nothing of the node can outlive it. `unshare --kill-child` SIGKILLs it when `unshare` dies, and
`unshare` dies with the lab process that started it (lab.processes: PR_SET_PDEATHSIG).

SPEC.json: {"mounts": [...], "kmsg_log": path or null, "ready": path}. Mount entries, applied in order:
  {"type": "tmpfs", "target": "/run"}                        a fresh, private tmpfs
  {"type": "bind", "source": "<file or dir>", "target": "/var/log"}
  {"type": "overlay", "target": "/var/lib", "upper": "<dir>", "work": "<dir>"}   host content, node writes
With "kmsg_log", a pty is opened and its slave bound over /dev/kmsg: what the node's processes write to
their /dev/kmsg lands in the pty, whose master this process copies into kmsg_log (the host's real
/dev/kmsg is never written). As PID 1 it also reaps the orphans of its namespace (containerd shims).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import sys
import tty

MS_BIND = 4096
_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    # libc mount(2), not mount(8): mount(8) would record entries in /run/mount/utab.
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} {source} on {target}: {os.strerror(err)}")


def apply(entry: dict) -> None:
    kind, target = entry["type"], entry["target"]
    if kind == "tmpfs":
        mount("faultflow-node", target, "tmpfs", 0, entry.get("data", "mode=755"))
    elif kind == "bind":
        mount(entry["source"], target, None, MS_BIND)
    elif kind == "overlay":
        mount("faultflow-node", target, "overlay", 0, f"lowerdir={target},upperdir={entry['upper']},workdir={entry['work']}")
    else:
        raise ValueError(f"unknown mount type {kind!r}")


def main(spec_path: str) -> int:
    if os.getpid() != 1:
        print("nsinit: must be PID 1 of a new PID namespace (start it with unshare --pid --fork)", file=sys.stderr)
        return 2
    spec = json.loads(open(spec_path).read())
    for entry in spec["mounts"]:
        apply(entry)
    master = None
    ready: dict[str, int | str] = {"pid": os.getpid()}
    if spec.get("kmsg_log"):
        master, slave = os.openpty()
        tty.setraw(slave)  # bytes pass through unchanged, no echo back to the writer
        kmsg = os.ttyname(slave)
        ready["kmsg"] = kmsg
        mount(kmsg, "/dev/kmsg", None, MS_BIND)
    # Wake the loop on SIGCHLD (orphans to reap) and leave on SIGTERM; PID 1 gets no default actions.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    with open(spec["ready"] + ".partial", "w") as out:
        json.dump(ready, out)
    os.replace(spec["ready"] + ".partial", spec["ready"])
    sink = open(spec["kmsg_log"], "ab", buffering=0) if master is not None else None
    watched = [wake_r] + ([master] if master is not None else [])
    while True:
        try:
            readable, _, _ = select.select(watched, [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 512)
            _reap()
        if master is not None and master in readable:
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: every slave closed for now; the bind mount reopens it
                if exc.errno != errno.EIO:
                    raise
                continue
            if sink is not None:
                sink.write(data)


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
