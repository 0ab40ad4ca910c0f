"""`faultflow step inject-xid`: on the target node, switch the CUDA toggle on and log the XID.

Runs in a privileged pod pinned to the node (hostPath /dev/kmsg and the toggle directory, no
service-account token): it needs no API access. The toggle entry in the run ledger was written by
preflight, before this step can run, so the janitor can switch it off whatever happens here.
Order matters: toggle first, then the kernel line — shimmed processes fail at the moment NVSentinel's
evidence appears, as on real hardware. A SIGTERM between the two switches the toggle off again.

The toggle names the XID's GPU by its PCI bus id (`bus=`), so the fault hits the GPU the line names:
the shim asks the driver each device's bus id, because a pod holding host GPU 3 sees it as CUDA
device 0 (the host minor of --gpu means nothing inside the pod). The trigger options (--mode,
--after-calls, --probability, --seed, --hang-ms) are `faultflow shim on`'s.

The line is the driver's (XID 79: both of its lines, in its order). On the node the step also reads
NVSentinel's `gpu_metadata.json` and reports what NVSentinel will make of the line here
(steps.gpu.expectation): outputs `expected-action` and `expected-why`, for wait-for-cordon and the report.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from steps.errors import BadInput, InfrastructureError
from steps.event_names import EventName
from steps.events import emit
from steps.gpu import kmsg, toggle
from steps.gpu.expectation import GPU_METADATA_PATH, expect_on_node, read_gpu_metadata
from steps.gpu.pci import resolve_pci
from steps.gpu.xids import DEFAULT_RECOVERY, RECOVERY
from steps.option_types import FaultDuration, RunId, XidType, outputs_option, trigger_options
from steps.outputs import Outputs
from steps.signals import Terminated, sigterm_raises

STEP = "inject-xid"
# pid= of the line when --pid is not given: a fixed value, not this process's pid, which outside the
# node's PID namespace (no hostPID) is meaningless on the node.
DEFAULT_PID = 0


def _check_toggle_dir(path: str) -> Path:
    """The toggle file in the directory, if the writer may write it (an existing file must be a toggle
    record, not a symbolic link; a missing one is created then)."""
    directory = Path(path)
    if not directory.is_dir():
        raise BadInput(f"toggle directory {path} does not exist")
    target = directory / toggle.FILE_NAME
    try:
        toggle.check_writable(target)
    except FileNotFoundError:
        if not os.access(directory, os.W_OK):
            raise BadInput(f"toggle file {target} is not writable") from None
    except OSError as error:
        raise BadInput(f"toggle file {target} is not writable: {error.strerror}") from None
    return target


@click.command(STEP)
@click.option("--xid", required=True, type=XidType(), help="XID to inject (1-172).")
@click.option("--gpu", "gpu_index", default=0, show_default=True, type=click.IntRange(0, 63), help="GPU (host device minor).")
@click.option(
    "--pid",
    default=DEFAULT_PID,
    show_default=True,
    type=click.IntRange(0, 2**22),
    help="pid= in the line. Default 0: no user process; the pod runs without hostPID (Argo's emissary "
    "before v4.1 would forward a signal to every process on the node), so its own pid means nothing "
    "there. NVSentinel reads pid= as metadata only.",
)
@click.option("--proc-name", default="python3", show_default=True, help="name= in the line.")
@click.option("--kmsg-path", default="/dev/kmsg", show_default=True, help="Kernel log device.")
@click.option("--proc-root", default="/proc", show_default=True, help="The host's /proc (for the GPU's PCI address).")
@click.option("--toggle-dir", default=None, help="Node toggle directory; omit to log the XID only (xid-only scenario).")
@click.option(
    "--expires-in", default="30m", show_default=True, type=FaultDuration(), help="The toggle switches itself off after this (at most 24h)."
)
@click.option(
    "--toggle-gpu",
    default=-1,
    show_default=True,
    type=click.IntRange(-1, toggle.MAX_GPU),
    help="The toggle targets the XID's GPU by PCI bus id; where a process cannot learn its devices' bus ids, "
    "calls on this CUDA device ordinal fail instead (-1: every device).",
)
@trigger_options
@click.option(
    "--recovery-action",
    default=DEFAULT_RECOVERY,
    show_default=True,
    type=click.Choice(list(RECOVERY)),
    help="XID 154 only: the recovery the line reports (NVSentinel takes its action from it).",
)
@click.option(
    "--gpu-metadata",
    default=GPU_METADATA_PATH,
    show_default=True,
    help="NVSentinel's GPU metadata on the node (decides COMPONENT_RESET vs RESTART_VM; a missing file is a fact, not an error).",
)
@click.option("--run-id", default=None, type=RunId(), help="Run id (for the events).")
@outputs_option(help="Write output parameters here (fault-time-ms, pci, xid-line, expected-action).")
def command(
    xid,
    gpu_index,
    pid,
    proc_name,
    kmsg_path,
    proc_root,
    toggle_dir,
    expires_in,
    toggle_gpu,
    triggers,
    recovery_action,
    gpu_metadata,
    run_id,
    outputs_dir,
):
    """Switch the node's CUDA fault toggle on and write the XID line to the kernel log."""
    outputs = Outputs(outputs_dir)
    # Everything is validated before anything changes.
    outputs.check()
    if recovery_action != DEFAULT_RECOVERY and xid != 154:
        raise BadInput("--recovery-action applies to XID 154 only")
    gpu = resolve_pci(proc_root, gpu_index)
    metadata = read_gpu_metadata(gpu_metadata)
    expected = expect_on_node(xid, gpu.pci, metadata, recovery_action)
    records = kmsg.xid_records(xid, gpu.pci, pid, proc_name, recovery_action, metadata.driver_version if metadata.found else "")
    line = records[0]
    kmsg.check_writable(kmsg_path)
    toggle_file = _check_toggle_dir(toggle_dir) if toggle_dir else None

    with sigterm_raises():
        fault_ms = int(time.time() * 1000)
        try:
            if toggle_file is not None:
                expires_ms = fault_ms + int(expires_in * 1000)
                record = toggle.Toggle.switched_on(xid, expires_ms, toggle_gpu, triggers, bus=gpu.bus_id)
                try:
                    toggle.write(toggle_file, record)
                except OSError as error:
                    raise InfrastructureError(f"cannot write toggle {toggle_file}: {error.strerror}") from None
                emit(
                    STEP,
                    EventName.FAULT_INJECTED,
                    run_id=run_id,
                    kind="cuda",
                    xid=xid,
                    toggle=str(toggle_file),
                    expires_ms=expires_ms,
                    gpu=toggle_gpu,
                    bus=gpu.bus_id,
                    mode=triggers.mode,
                )
            for record in records:  # the driver's lines, in its order, one record each
                kmsg.write_record(kmsg_path, record)
        except (Terminated, InfrastructureError, BadInput):
            if toggle_file is not None:
                toggle.write(toggle_file, toggle.Toggle(on=False))
                emit(STEP, EventName.FAULT_CLEARED, run_id=run_id, kind="cuda", toggle=str(toggle_file), reason="step did not finish")
            raise
    # The kernel line is the XID fault itself (what NVSentinel reacts to): a fault of its own kind.
    emit(
        STEP,
        EventName.FAULT_INJECTED,
        run_id=run_id,
        kind="xid",
        xid=xid,
        pci=gpu.pci,
        gpu=gpu_index,
        kmsg=kmsg_path,
        fault_time_ms=fault_ms,
        line=line.decode().rstrip("\n"),
        lines=len(records),
        driver_version=metadata.driver_version,
        **expected.as_fields(),
    )
    outputs.write("fault-time-ms", str(fault_ms))
    outputs.write("pci", gpu.pci)
    outputs.write("xid-line", line.decode().rstrip("\n"))
    outputs.write("expected-action", expected.action)
    outputs.write("expected-why", expected.why)
