"""What a real lab made on the machine, written down before it is made, so `teardown` can undo it after
any crash (a SIGKILLed `lab up`, a killed test): `<lab>/made.jsonl`, one JSON object per line.

  {"kind": "pid", "pid": 123, "start": <starttime from /proc/123/stat>, "name": "node gpu-0"}
  {"kind": "cgroup", "path": "/sys/fs/cgroup/memory/faultflow-…-gpu-0"}

A pid is recorded with its start time, so a recycled pid is never mistaken for ours: `teardown`
signals only a process whose pid *and* start time match the record. Everything else a lab makes lives
inside the namespaces those processes hold (network namespaces, mounts, containers) and disappears
with them, or under the lab directory.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot); None once the process is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


class Ledger:
    def __init__(self, path: Path):
        self.path = path

    def _append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as out:
            out.write(json.dumps(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())  # the record must exist before what it records can leak

    def pid(self, pid: int, name: str) -> None:
        start = start_time(pid)
        if start is not None:
            self._append({"kind": "pid", "pid": pid, "start": start, "name": name})

    def cgroup(self, path: Path) -> None:
        self._append({"kind": "cgroup", "path": str(path)})

    def entries(self) -> list[dict]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut short by a crash while it was written
                continue
        return out

    def live_pids(self) -> list[dict]:
        return [e for e in self.entries() if e["kind"] == "pid" and start_time(e["pid"]) == e["start"]]


def teardown(ledger: Ledger, timeout_s: float = 30) -> dict:
    """Undo everything `ledger` records, in reverse order; returns what was found still there.

    Recorded processes are SIGKILLed (a node holder's death takes its whole PID namespace with it),
    then the recorded cgroups are emptied of stray tasks (only the lab's processes ever run in them)
    and removed, deepest first.
    """
    entries = ledger.entries()
    killed = []
    for entry in reversed(entries):
        if entry["kind"] == "pid" and start_time(entry["pid"]) == entry["start"]:
            os.kill(entry["pid"], signal.SIGKILL)
            killed.append(entry["name"])
    _wait(lambda: not ledger.live_pids(), timeout_s)
    removed = []
    for entry in reversed(entries):
        if entry["kind"] == "cgroup":
            removed += remove_cgroup_tree(Path(entry["path"]), timeout_s)
    return {"killed": killed, "cgroups_removed": removed}


def remove_cgroup_tree(top: Path, timeout_s: float) -> list[str]:
    """rmdir a cgroup and its children, SIGKILLing any task still in them first (ours only: the lab
    made the tree and only the lab's nodes put processes there)."""
    if not top.is_dir():
        return []
    for procs in top.rglob("cgroup.procs"):
        for line in _read_lines(procs):
            try:
                os.kill(int(line), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    removed = []
    for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [top]:
        # A killed task leaves its cgroup only once it is reaped: retry rmdir (EBUSY) until the deadline.
        if _wait(lambda f=folder: _rmdir(f), timeout_s):
            removed.append(str(folder))
    return removed


def _rmdir(folder: Path) -> bool:
    try:
        folder.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling the process table / cgroupfs until the kernel has finished
    return True
