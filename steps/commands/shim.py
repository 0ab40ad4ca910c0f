"""`faultflow shim on|off|status`: validated writes of the node toggle file."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click

from steps.errors import BadInput, InfrastructureError
from steps.gpu import toggle
from steps.gpu.xids import catalogue


def _writable_target(path: str) -> Path:
    """The toggle path, if it can be written; BadInput (nothing touched) otherwise.

    Asks the file system itself rather than permission bits (root passes every access() check, but a
    read-only mount or a proc file still refuses): an existing file gets its first byte written back
    unchanged, a new one's directory must accept a temporary file that is removed at once."""
    target = Path(path)
    if target.is_dir():
        raise BadInput(f"toggle file {path} is a directory")
    parent = target.parent
    if not parent.is_dir():
        raise BadInput(f"toggle directory {parent} does not exist")
    try:
        if target.exists():
            _rewrite_first_byte(target)
        else:
            tempfile.TemporaryFile(dir=parent).close()
    except OSError as error:
        raise BadInput(f"toggle file {path} is not writable: {error.strerror}") from None
    return target


def _rewrite_first_byte(target: Path) -> None:
    fd = os.open(target, os.O_RDWR)
    try:
        first = os.pread(fd, 1, 0)
        if first:
            os.pwrite(fd, first, 0)
    finally:
        os.close(fd)


def _expiry_ms(expires_in: float | None) -> int:
    if expires_in is None:
        return 0
    if math.isnan(expires_in) or math.isinf(expires_in) or expires_in <= 0:
        raise BadInput(f"--expires-in must be a positive number of seconds, got {expires_in}")
    return int(time.time() * 1000 + expires_in * 1000)


@dataclass(frozen=True)
class Triggers:
    """How the fault shows: its mode, when it trips, and which GPU NVML consumers see failing."""

    mode: str = "error"
    after_calls: int = 0
    probability: float = 1.0
    seed: int = 0
    hang_ms: int = 0
    bus: str = ""

    def check(self) -> None:
        if self.mode not in toggle.MODES:
            raise BadInput(f"--mode must be one of {', '.join(toggle.MODES)}, got {self.mode}")
        if not 0 <= self.after_calls <= MAX_COUNT:
            raise BadInput(f"--after-calls must be 0-{MAX_COUNT}, got {self.after_calls}")
        if math.isnan(self.probability) or not 0 < self.probability <= 1:
            raise BadInput(f"--probability must be in (0, 1], got {self.probability}")
        if not 0 <= self.seed <= MAX_COUNT:
            raise BadInput(f"--seed must be 0-{MAX_COUNT}, got {self.seed}")
        if not 0 <= self.hang_ms <= MAX_COUNT:
            raise BadInput(f"--hang-ms must be 0-{MAX_COUNT}, got {self.hang_ms}")
        if self.hang_ms and self.mode != "hang":
            raise BadInput("--hang-ms needs --mode hang")
        if self.bus and not BUS_ID.fullmatch(self.bus):
            raise BadInput(f"--bus must be a PCI bus id like 00000000:3B:00.0, got {self.bus}")


MAX_COUNT = 10**9  # keeps every field of the record within its 256 bytes
BUS_ID = re.compile(r"(?:[0-9A-Fa-f]{4}|[0-9A-Fa-f]{8}):[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]")


def switch_on(path: str, xid: int, expires_in: float | None, gpu: int, triggers: Triggers = Triggers()) -> None:
    if xid not in catalogue():
        raise BadInput(f"unknown XID {xid}: choose one of 1-172 (faultflow xids)")
    if gpu < -1:
        raise BadInput(f"--gpu must be a device index or -1 for all, got {gpu}")
    triggers.check()
    record = toggle.Toggle(
        on=True, xid=xid, expires_ms=_expiry_ms(expires_in), gpu=gpu, mode=triggers.mode,
        after_calls=triggers.after_calls, probability=triggers.probability, seed=triggers.seed,
        hang_ms=triggers.hang_ms, bus=triggers.bus,
    )  # fmt: skip
    _write(_writable_target(path), record)
    show(path)


def switch_off(path: str) -> None:
    target = _writable_target(path)
    _write(target, toggle.Toggle(on=False))
    show(path)


def _write(target: Path, record: toggle.Toggle) -> None:
    try:
        toggle.write(target, record)
    except OSError as error:
        raise InfrastructureError(f"cannot write toggle {target}: {error.strerror}") from error


def show(path: str) -> None:
    try:
        record = toggle.read(Path(path))
    except FileNotFoundError:
        raise BadInput(f"toggle file {path} does not exist") from None
    except OSError as error:
        raise InfrastructureError(f"cannot read toggle {path}: {error.strerror}") from error
    print(
        json.dumps(
            {
                "file": path,
                "on": record.on,
                "active": record.active(),
                "xid": record.xid,
                "expires_ms": record.expires_ms,
                "gpu": record.gpu,
                "version": record.version,
                "at_ms": record.at_ms,
                "mode": record.mode,
                "after_calls": record.after_calls,
                "probability": record.probability,
                "seed": record.seed,
                "hang_ms": record.hang_ms,
                "bus": record.bus,
            },
            sort_keys=True,
        )
    )


@click.group("shim")
def group() -> None:
    """Switch the node-level CUDA fault toggle that every shimmed process maps."""


@group.command("on")
@click.option("--file", "path", required=True, help="Toggle file (the node's toggle directory + file name).")
@click.option("--xid", required=True, type=int, help="XID whose CUDA error the shimmed processes return.")
@click.option("--expires-in", type=float, default=None, help="Seconds after which the fault switches itself off.")
@click.option("--gpu", type=int, default=-1, show_default=True, help="Only calls on this CUDA device fail (-1: all).")
@click.option("--mode", default="error", show_default=True, help="error: calls fail; hang: synchronize, launch and memcpy calls block.")
@click.option("--after-calls", type=int, default=0, show_default=True, help="The first N targeted calls of each process pass.")
@click.option(
    "--probability",
    type=float,
    default=1.0,
    show_default=True,
    help="Each targeted call after that fails with this probability (0 < P <= 1).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the per-process draw sequence for --probability.")
@click.option(
    "--hang-ms",
    type=int,
    default=0,
    show_default=True,
    help="Hang mode: a blocked call fails with the XID's error after this long (0: blocks until off).",
)
@click.option("--bus", default="", help="PCI bus id of the GPU NVML consumers see failing (default: the --gpu index).")
def on_command(
    path: str,
    xid: int,
    expires_in: float | None,
    gpu: int,
    mode: str,
    after_calls: int,
    probability: float,
    seed: int,
    hang_ms: int,
    bus: str,
) -> None:
    """Turn CUDA (and NVML) faults on for every shimmed process on this node."""
    switch_on(path, xid, expires_in, gpu, Triggers(mode, after_calls, probability, seed, hang_ms, bus))


@group.command("off")
@click.option("--file", "path", required=True, help="Toggle file.")
def off_command(path: str) -> None:
    """Turn CUDA faults off (passthrough)."""
    switch_off(path)


@group.command("status")
@click.option("--file", "path", required=True, help="Toggle file.")
def status_command(path: str) -> None:
    """Show the toggle's state as JSON."""
    show(path)
