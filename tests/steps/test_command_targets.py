"""Every command `faultflow` offers resolves to a click command: the lazily imported step and top-level
targets of steps/cli.py, and the commands of the packages above steps (the entry point group)."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points

import click
import pytest

from steps.cli import ENTRY_POINT_GROUP, STEP_COMMANDS, TOP_COMMANDS


def resolve(target: str) -> object:
    module, _, attribute = target.partition(":")
    return getattr(import_module(module), attribute)


@pytest.mark.parametrize("name,target", sorted(STEP_COMMANDS.items()))
def test_step_command_target(name: str, target: str) -> None:
    assert target == f"steps.commands.{name.replace('-', '_')}:command"
    command = resolve(target)
    assert isinstance(command, click.Command)
    assert command.name == name  # what its usage line and errors call it


@pytest.mark.parametrize("name,target", sorted(TOP_COMMANDS.items()))
def test_top_command_target(name: str, target: str) -> None:
    command = resolve(target)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_entry_point_commands() -> None:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"render", "lab", "run"} <= set(found)
    assert {name: isinstance(resolve(target), click.Command) for name, target in found.items()} == dict.fromkeys(found, True)
