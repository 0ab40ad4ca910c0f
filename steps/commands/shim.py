"""`faultflow shim on|off|status`: validated writes of the node toggle file."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from steps.errors import BadInput, InfrastructureError
from steps.event_names import EventName
from steps.events import emit
from steps.gpu import toggle
from steps.gpu.xids import catalogue
from steps.option_types import FaultDuration, RunId, trigger_options


def _existing_target(path: str) -> Path | None:
    """The toggle file, if it exists and can be written; None when it does not exist; BadInput (nothing
    touched) otherwise.

    Asks the file system itself rather than permission bits (root passes every access() check, but a
    read-only mount or a proc file still refuses): the file is opened for writing as the writer will
    (never through a symbolic link, only a toggle record) and closed."""
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        raise BadInput(f"toggle file {path} is a directory")
    if not target.parent.is_dir():
        raise BadInput(f"toggle directory {target.parent} does not exist")
    try:
        toggle.check_writable(target)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise BadInput(f"toggle file {path} is not writable: {error.strerror}") from None
    return target


def _creatable_target(path: str) -> Path:
    """A missing toggle file's path, if its directory accepts a new file (a temporary one, removed at once)."""
    target = Path(path)
    try:
        tempfile.TemporaryFile(dir=target.parent).close()
    except OSError as error:
        raise BadInput(f"toggle file {path} is not writable: {error.strerror}") from None
    return target


def expiry_ms(expires_in: float) -> int:
    """The expiry of a fault switched on now for `expires_in` seconds (validated by the option type)."""
    return toggle.now_ms() + int(expires_in * 1000)


def host_gpu_bus(host_gpu: int, proc_root: str) -> str:
    """The PCI bus id of the node's GPU with this device minor, from the driver's /proc tree (what
    inject-xid names in the XID line): the GPU a worker sees as some CUDA ordinal of its own."""
    from steps.gpu.pci import resolve_pci

    return resolve_pci(proc_root, host_gpu).bus_id


NO_TRIGGERS = toggle.Triggers()  # error mode, every targeted call


def switch_on(
    path: str, xid: int, expires_in: float, gpu: int, triggers: toggle.Triggers = NO_TRIGGERS, bus: str = "", run_id: str | None = None
) -> None:
    """On, in place. With `run_id` (a scenario's toggle-on stage) the switch is the run's fault, so it is
    announced as `fault_injected` (kind cuda), the moment the report splits baseline from fault at."""
    if xid not in catalogue():
        raise BadInput(f"unknown XID {xid}: choose one of 1-172 (faultflow xids)")
    if not toggle.ALL_GPUS <= gpu <= toggle.MAX_GPU:
        raise BadInput(f"--gpu must be a device index 0-{toggle.MAX_GPU} or -1 for all, got {gpu}")
    triggers.check()
    if bus and not toggle.BUS_ID.fullmatch(bus):
        raise BadInput(f"--bus must be a PCI bus id like 00000000:3B:00.0, got {bus}")
    record = toggle.Toggle.switched_on(xid, expiry_ms(expires_in), gpu, triggers, bus)
    _write(_existing_target(path) or _creatable_target(path), record)
    if run_id is not None:
        emit(
            "toggle-on",
            EventName.FAULT_INJECTED,
            run_id=run_id,
            kind="cuda",
            xid=xid,
            toggle=path,
            expires_ms=record.expires_ms,
            gpu=gpu,
            bus=bus,
            mode=triggers.mode,
        )
    show(path)


def switch_off(path: str, create: bool = False) -> None:
    """Off, in place. A missing file is left missing unless `create`: no fault can be on through it (the
    shim maps the file only when a process starts), a typo must not leave stray files on a node, and the
    revert that calls this (cleanup, the janitor's toggle-off pod) must succeed on a node where the
    toggle was never created — so exit 0, with a note. `create` makes it, switched off, as a node does
    before its workloads start (the shim image's install.sh)."""
    target = _existing_target(path)
    if target is None and create:
        target = _creatable_target(path)
    if target is None:
        print(f"faultflow: toggle file {path} does not exist: nothing to switch off", file=sys.stderr)
        return
    _write(target, toggle.Toggle(on=False))
    show(path)


def _write(target: Path, record: toggle.Toggle) -> None:
    try:
        toggle.write(target, record)
    except OSError as error:
        raise InfrastructureError(f"cannot write toggle {target}: {error.strerror}") from error


def show(path: str) -> None:
    if Path(path).is_dir():
        raise BadInput(f"toggle file {path} is a directory")
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
@click.option(
    "--expires-in",
    type=FaultDuration(),
    default=f"{toggle.DEFAULT_DURATION_S}s",
    show_default="30m",
    help="The fault switches itself off after this (seconds, or 30s/5m/1h; at most 24h).",
)
@click.option("--gpu", type=int, default=-1, show_default=True, help="Only calls on this CUDA device ordinal fail (-1: all).")
@trigger_options
@click.option(
    "--bus",
    default="",
    help="PCI bus id of the GPU whose calls fail, in CUDA processes (the shim asks the driver each device's bus id) "
    "and NVML consumers (default: the --gpu index).",
)
@click.option(
    "--host-gpu",
    type=click.IntRange(0, toggle.MAX_GPU),
    default=None,
    help="The node's GPU with this device minor (/dev/nvidiaN), by its PCI bus id from --proc-root: instead of --bus.",
)
@click.option("--proc-root", default="/proc", show_default=True, help="The host's /proc, for --host-gpu.")
@click.option("--run-id", default=None, type=RunId(), help="The scenario run this fault belongs to: announce it (event fault_injected).")
def on_command(
    path: str,
    xid: int,
    expires_in: float,
    gpu: int,
    triggers: toggle.Triggers,
    bus: str,
    host_gpu: int | None,
    proc_root: str,
    run_id: str | None,
) -> None:
    """Turn CUDA (and NVML) faults on for every shimmed process on this node."""
    if host_gpu is not None:
        if bus:
            raise BadInput("give --bus or --host-gpu, not both")
        bus = host_gpu_bus(host_gpu, proc_root)
    switch_on(path, xid, expires_in, gpu, triggers, bus, run_id)


@group.command("off")
@click.option("--file", "path", required=True, help="Toggle file.")
@click.option(
    "--create",
    is_flag=True,
    help="Create the file (switched off) if it does not exist, as a node does before its workloads start; "
    "without it a missing file is left missing (exit 0).",
)
def off_command(path: str, create: bool) -> None:
    """Turn CUDA faults off (passthrough)."""
    switch_off(path, create)


@group.command("status")
@click.option("--file", "path", required=True, help="Toggle file.")
def status_command(path: str) -> None:
    """Show the toggle's state as JSON."""
    show(path)
