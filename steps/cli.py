"""`faultflow`: the click group every entry point goes through.

Start-up must stay fast (a step pod runs one command and exits), so this module imports only click
and the small error module; each command imports what it needs inside its body. Commands that live
in packages above `steps` (render, lab, run) are registered through the `faultflow.commands` entry
point group, so `steps` never imports them.

Errors: every failure is one line on stderr and an exit code from `steps.errors.ExitCode`; click's
own usage errors are turned into the same one-line form with exit 2, and any exception nobody
foresaw into one line with exit 3 (never a traceback, never exit 1, which means "a check failed").
"""

from __future__ import annotations

import os
import sys
import traceback
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
            from importlib.util import find_spec

            for ep in entry_points(group=self._entry_point_group):
                # The step image installs `steps` alone (images/steps/Dockerfile): a command whose package
                # it does not ship (render, lab, run) is not offered, rather than failing `--help`.
                if find_spec(ep.module.partition(".")[0]) is not None:
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


# Commands beside the steps, each in its own module under steps/commands/.
TOP_COMMANDS: dict[str, str] = {
    "xids": "steps.commands.xids:command",
    "shim": "steps.commands.shim:group",
    "faults": "steps.commands.faults:group",
    "report": "steps.commands.report_compare:group",
    "halt": "steps.commands.halt:command",
}


@click.group(cls=LazyGroup, lazy=TOP_COMMANDS, entry_point_group=ENTRY_POINT_GROUP)
def main() -> None:
    """GPU fault-injection scenarios for NVIDIA Dynamo on Kubernetes."""


# `faultflow step X-Y` is the click command `command` of `steps/commands/x_y.py`; listing a name here is all
# it takes to add a step. Each module imports its heavy dependencies lazily.
STEP_NAMES = (
    "preflight",
    "inject-cuda-shim",
    "inject-xid",
    "wait-for-cordon",
    "watch-reach",
    "cleanup-dgd",
    "restore-node",
    "janitor",
    "partition-network",
    "degrade-network",
    "heal-network",
    "verify-partition",
    "verify-inference",
    "load",
    "report",
    "suite-gate",
    "watch-abort",
)
STEP_COMMANDS: dict[str, str] = {name: f"steps.commands.{name.replace('-', '_')}:command" for name in STEP_NAMES}


@main.group(cls=LazyGroup, lazy=STEP_COMMANDS)
def step() -> None:
    """The step commands the scenarios chain (one per Argo task)."""


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def run(argv: list[str] | None = None) -> None:
    """Console-script entry point: one-line errors and the step exit codes."""
    run_group(main, argv)


def run_group(group: click.Group, argv: list[str] | None = None) -> None:
    """`group` as the `faultflow` command (this one, or the node agent's: steps.node_agent), with one-line
    errors and the step exit codes."""
    try:
        group.main(args=argv, prog_name="faultflow", standalone_mode=False)
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
    except Exception as error:  # noqa: BLE001 - the catch-all: whatever we did not foresee is still one line, exit 3
        # Not foreseen means not the caller's fault as far as we can tell (an API answer we could not
        # read, a file we could not write): an infrastructure error, which Argo's retryStrategy retries.
        # FAULTFLOW_TRACEBACK=1 shows where it came from.
        if os.environ.get("FAULTFLOW_TRACEBACK") == "1":
            traceback.print_exc()
        print(f"faultflow: error: unexpected {type(error).__name__}: {_one_line(error) or 'no detail'}", file=sys.stderr)
        sys.exit(ExitCode.INFRASTRUCTURE)
    sys.exit(ExitCode.DONE)
