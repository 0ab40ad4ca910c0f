"""A set of namespaces (network + mount + PID) held by `lab.nodes.nsinit`, and running things inside it.

The holder is started through `unshare` as a child of the lab process, recorded in the ledger before
anything is made inside it; `Namespaces.stop()` (or `ledger.teardown` after a crash) SIGKILLs that
`unshare`, whose `--kill-child` takes the holder, and with it the whole PID namespace, down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import processes
from lab.nodes.ledger import Ledger

READY_TIMEOUT_S = 30


@dataclass
class Namespaces:
    name: str
    folder: Path
    unshare: processes.Process
    pid: int  # the holder (PID 1 inside), as the host sees it: what nsenter -t takes
    kmsg: str | None  # the pty slave bound over /dev/kmsg inside, if any

    def enter(self, *, net: bool = True, mount: bool = True, pid: bool = True) -> list[str]:
        """argv prefix running a command inside (nsenter forks when entering the PID namespace, so
        the command is a full member of it)."""
        return ["nsenter", "-t", str(self.pid), *(["-n"] if net else []), *(["-m"] if mount else []), *(["-p"] if pid else []), "--"]

    def run(self, argv: list[str], *, net_only: bool = False) -> str:
        """Run a short command inside and return its stdout; a failure raises with its stderr."""
        cmd = self.enter(mount=not net_only, pid=not net_only) + argv
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{self.name}: `{' '.join(argv)}` failed (rc={proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def start(self, name: str, argv: list[str], log: Path, ledger: Ledger) -> processes.Process:
        """A long-running process inside (it dies with the holder whatever happens to us)."""
        proc = processes.start(name, self.enter() + argv, log)
        ledger.pid(proc.popen.pid, f"{self.name} {name}")
        return proc

    def alive(self) -> bool:
        return self.unshare.running()

    def stop(self) -> None:
        self.unshare.popen.kill()
        self.unshare.popen.wait()


def hold(name: str, folder: Path, ledger: Ledger, *, mounts: list[dict], kmsg_log: Path | None) -> Namespaces:
    """Start a holder with fresh network, mount and PID namespaces and the given private mounts; with
    `kmsg_log`, a pty bound over /dev/kmsg inside, copied to that file (`lab.nodes.nsinit`)."""
    folder.mkdir(parents=True, exist_ok=True)
    ready = folder / "nsinit.ready"
    ready.unlink(missing_ok=True)
    spec = folder / "nsinit.json"
    spec.write_text(json.dumps({"mounts": mounts, "ready": str(ready), "kmsg_log": str(kmsg_log) if kmsg_log else None}, indent=2))
    argv = [
        "unshare",
        "--net",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--propagation",
        "private",
        sys.executable,
        "-m",
        "lab.nodes.nsinit",
        str(spec),
    ]
    proc = processes.start(f"{name} namespaces", argv, folder / "nsinit.log")
    ledger.pid(proc.popen.pid, f"{name} unshare")
    try:
        state = processes.wait_until(lambda: _read_json(ready), what=f"{name} namespaces ready", timeout_s=READY_TIMEOUT_S, process=proc)
        holder = processes.wait_until(
            lambda: _only_child(proc.popen.pid), what=f"{name} holder pid", timeout_s=READY_TIMEOUT_S, process=proc
        )
    except BaseException:
        proc.popen.kill()
        proc.popen.wait()
        raise
    ledger.pid(holder, f"{name} holder")
    return Namespaces(name=name, folder=folder, unshare=proc, pid=holder, kmsg=state.get("kmsg"))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _only_child(pid: int) -> int | None:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if len(children) == 1 else None
