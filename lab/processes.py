"""Child processes of the lab: started with their output in a log file, never outliving us."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # If the test process is killed outright (no fixture teardown), the kernel kills our servers too.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A port on loopback that nothing listens on right now (the OS picks it: no fixed ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; returns once the process is reaped."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def stop_all(procs: list[Process], grace_s: float = 10.0) -> None:
    """Stop several processes at once: SIGTERM to all first, so their graceful shutdowns overlap."""
    for proc in procs:
        if proc.running():
            proc.popen.terminate()
    for proc in procs:
        proc.stop(grace_s)


def start(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    handle = open(log, "ab")
    try:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env if env is not None else os.environ.copy(),
            preexec_fn=_die_with_parent,
        )
    finally:
        handle.close()  # the child holds its own copy
    return Process(name=name, popen=popen, log=log)


class NotReady(RuntimeError):
    pass


def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float,
    process: Process | None = None,
    interval_s: float = 0.05,
) -> T:
    """Call `probe` until it returns something other than None, the deadline passes or `process` dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if process is not None and not process.running():
            raise NotReady(f"{process.name} exited (rc={process.popen.returncode}) before {what}:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            tail = f":\n{process.log_tail()}" if process else ""
            raise NotReady(f"timed out after {timeout_s}s waiting for {what}{tail}")
        time.sleep(interval_s)
