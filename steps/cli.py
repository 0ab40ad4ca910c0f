"""`faultflow`: the click group every entry point goes through.

Start-up must stay fast (a step pod runs one command and exits), so this module imports only click
and the small error module; each command imports what it needs inside its body. Commands that live
in packages above `steps` (render, lab, run) are registered through the `faultflow.commands` entry
point group, so `steps` never imports them.

Errors: every failure is one line on stderr and an exit code from `steps.errors.ExitCode`; click's
own usage errors are turned into the same one-line form with exit 2.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from steps.errors import ExitCode, StepError

ENTRY_POINT_GROUP = "faultflow.commands"


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (name → "module:attribute")."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, entry_point_group: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy or {})
        self._entry_point_group = entry_point_group

    def _targets(self) -> dict[str, str]:
        targets = dict(self._lazy)
        if self._entry_point_group:
            from importlib.metadata import entry_points

            for ep in entry_points(group=self._entry_point_group):
                targets.setdefault(ep.name, ep.value)
        return targets

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._targets()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        target = self._lazy.get(name) or self._targets().get(name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        return getattr(import_module(module), attribute)


@click.group(cls=LazyGroup, entry_point_group=ENTRY_POINT_GROUP)
def main() -> None:
    """GPU fault-injection scenarios for NVIDIA Dynamo on Kubernetes."""


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalogue as JSON.")
@click.option("--seed", is_flag=True, help="Only the XIDs faultflow simulates end to end (43 48 74 79 94 95 119 120).")
def xids(as_json: bool, seed: bool) -> None:
    """List the XID catalogue: NVSentinel's classification and the CUDA error each XID produces."""
    from steps.xid_listing import print_catalogue

    print_catalogue(as_json=as_json, seed_only=seed)


@main.group()
def shim() -> None:
    """Switch the node-level CUDA fault toggle that every shimmed process maps."""


@shim.command("on")
@click.option("--file", "path", required=True, help="Toggle file (the node's toggle directory + file name).")
@click.option("--xid", required=True, type=int, help="XID whose CUDA error the shimmed processes return.")
@click.option("--expires-in", type=float, default=None, help="Seconds after which the fault switches itself off.")
@click.option("--gpu", type=int, default=-1, show_default=True, help="Only calls on this CUDA device fail (-1: all).")
@click.option("--mode", default="error", show_default=True, help="error: calls fail; hang: synchronize, launch and memcpy calls block.")
@click.option("--after-calls", type=int, default=0, show_default=True, help="The first N targeted calls of each process pass.")
@click.option("--probability", type=float, default=1.0, show_default=True, help="Each targeted call after that fails with this probability (0 < P <= 1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the per-process draw sequence for --probability.")
@click.option("--hang-ms", type=int, default=0, show_default=True, help="Hang mode: a blocked call fails with the XID's error after this long (0: blocks until off).")
@click.option("--bus", default="", help="PCI bus id of the GPU NVML consumers see failing (default: the --gpu index).")
def shim_on(path: str, xid: int, expires_in: float | None, gpu: int, mode: str, after_calls: int, probability: float,
            seed: int, hang_ms: int, bus: str) -> None:
    """Turn CUDA (and NVML) faults on for every shimmed process on this node."""
    from steps.toggle_cli import Triggers, switch_on

    switch_on(path, xid, expires_in, gpu, Triggers(mode, after_calls, probability, seed, hang_ms, bus))


@shim.command("off")
@click.option("--file", "path", required=True, help="Toggle file.")
def shim_off(path: str) -> None:
    """Turn CUDA faults off (passthrough)."""
    from steps.toggle_cli import switch_off

    switch_off(path)


@shim.command("status")
@click.option("--file", "path", required=True, help="Toggle file.")
def shim_status(path: str) -> None:
    """Show the toggle's state as JSON."""
    from steps.toggle_cli import show

    show(path)


# Step name → "module:click_command". Each step module defines its own command (options, validation)
# and imports its heavy dependencies lazily; listing one here is all it takes to add a step.
STEP_COMMANDS: dict[str, str] = {
    "verify-inference": "steps.inference_cli:verify_inference",
    "load": "steps.inference_cli:load",
    "report": "steps.report_cli:report",
    "preflight": "steps.preflight:command",
    "inject-cuda-shim": "steps.shim_inject:command",
    "inject-xid": "steps.xid_inject:command",
    "wait-for-cordon": "steps.cordon_wait:command",
    "cleanup-dgd": "steps.cleanup:command",
    "restore-node": "steps.node_restore:command",
    "janitor": "steps.janitor:command",
    "partition-network": "steps.network_partition:command",
    "degrade-network": "steps.network_degrade:command",
    "heal-network": "steps.network_heal:command",
    "verify-partition": "steps.network_verify:command",
}


@main.group(cls=LazyGroup, lazy=STEP_COMMANDS)
def step() -> None:
    """The step commands the scenarios chain (one per Argo task)."""


# `faultflow faults list|recover`: the active faults in the cluster, from the run ledgers.
main.add_command(LazyGroup(name="faults", lazy={"list": "steps.faults:list_command", "recover": "steps.faults:recover_command"},
                           help="Active faults in the cluster (from the run ledgers) and how to revert them now."))


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors and the step exit codes."""
    try:
        main.main(args=argv, prog_name="faultflow", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        print("faultflow: aborted", file=sys.stderr)
        sys.exit(ExitCode.INFRASTRUCTURE)
    except click.ClickException as error:  # usage errors, bad parameters
        print(f"faultflow: error: {_one_line(error.format_message())}", file=sys.stderr)
        sys.exit(ExitCode.BAD_INPUT)
    except StepError as error:
        print(f"faultflow: error: {_one_line(error)}", file=sys.stderr)
        sys.exit(error.exit_code)
    sys.exit(ExitCode.DONE)

