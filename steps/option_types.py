"""The click parameter types and option decorators of the node-side commands (inject-xid, `shim`),
which the node-agent image runs (steps.node_agent): click, the standard library and the toggle record
only. steps.options re-exports them beside the cluster-side ones (which reach the Kubernetes client
through the run context), so the node agent's imports never reach that client (import-linter's
`node-agent-narrow` contract)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

import click

from steps.errors import BadInput
from steps.gpu import toggle

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")
_RUN_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


def parse_duration(text: str) -> float:
    """Seconds from `90`, `90s`, `1.5m`, `2h`, `1h30m`, `250ms`; BadInput for anything else or <= 0."""
    raw = str(text).strip()
    try:
        value = float(raw)
    except ValueError:
        found = _DURATION.match(raw)
        if not raw or found is None or not any(found.groups()):
            raise BadInput(f"{text!r} is not a duration (examples: 30s, 5m, 1h30m, 250ms)") from None
        h, m, s, ms = (float(g) if g else 0.0 for g in found.groups())
        value = h * 3600 + m * 60 + s + ms / 1000
    if math.isnan(value) or math.isinf(value) or value <= 0:
        raise BadInput(f"duration {text!r} must be positive")
    return value


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param, ctx) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(value)
        except BadInput as error:
            self.fail(str(error), param, ctx)


class FaultDuration(Duration):
    """How long a fault stays on: a duration of at most 24 h (the shim reads a longer one as off)."""

    def convert(self, value: Any, param, ctx) -> float:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds) or seconds <= 0:
            self.fail(f"duration {value!r} must be positive", param, ctx)
        if seconds * 1000 > toggle.MAX_DURATION_MS:
            self.fail(f"{value!r} is longer than {toggle.MAX_DURATION_MS // 3_600_000}h, the longest a fault may stay on", param, ctx)
        return seconds


class RunId(click.ParamType):
    name = "run-id"

    def convert(self, value: Any, param, ctx) -> str:
        if not isinstance(value, str) or not _RUN_ID.match(value):
            self.fail(f"{value!r} is not a run id (lower-case letters, digits and '-', at most 40)", param, ctx)
        return value


class XidType(click.ParamType):
    name = "xid"

    def convert(self, value: Any, param, ctx) -> int:
        from steps.gpu.xids import XID_RANGE, catalogue

        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an XID number", param, ctx)
        if number not in catalogue():
            self.fail(f"unknown XID {number}: choose one of {XID_RANGE.start}-{XID_RANGE.stop - 1}", param, ctx)
        return number


def outputs_option(
    default: str | None = None, help: str = "Directory for the output parameter files (Argo valueFrom.path).", required: bool = False
):
    """`--outputs-dir DIR`, handed to the command as `outputs_dir`. `--outputs` is its old spelling
    (verify-inference, load and report had it): hidden, accepted by every command for one release
    (0.1.x), since the rendered templates of those three still pass it. `required`: the command always
    writes files there, so an empty value is refused."""

    def decorate(command):
        @functools.wraps(command)
        def merged(*args, outputs_dir: str | None, outputs_old: str | None, **kwargs):
            if outputs_dir is not None and outputs_old is not None:
                raise BadInput("give --outputs-dir (or its old spelling --outputs), not both")
            chosen = outputs_dir if outputs_dir is not None else outputs_old if outputs_old is not None else default
            if required and not chosen:
                raise BadInput("--outputs-dir must name a directory")
            return command(*args, outputs_dir=chosen, **kwargs)

        merged = click.option("--outputs", "outputs_old", default=None, hidden=True)(merged)
        shown = f"{help}  [default: {default}]" if default is not None else help
        return click.option("--outputs-dir", default=None, metavar="DIR", help=shown)(merged)

    return decorate


class FiniteFloat(click.ParamType):
    """A float within bounds; NaN and infinities are refused (click's FloatRange lets NaN through)."""

    name = "number"

    def __init__(self, low: float | None = None, high: float | None = None, low_open: bool = False):
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
        if math.isnan(number) or math.isinf(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            self.fail(f"{value!r} must be {'>' if self.low_open else '>='} {self.low:g}", param, ctx)
        if self.high is not None and number > self.high:
            self.fail(f"{value!r} must be <= {self.high:g}", param, ctx)
        return number


def trigger_options(command: Callable) -> Callable:
    """How the fault shows, shared by `faultflow shim on` and `faultflow step inject-xid` (which flips the
    same toggle): --mode, --hang-ms, --after-calls, --probability, --seed, handed to the command as one
    `triggers` (steps.gpu.toggle.Triggers), checked as a whole (--hang-ms needs --mode hang)."""

    @functools.wraps(command)
    def merged(*args, mode: str, hang_ms: int, after_calls: int, probability: float, seed: int, **kwargs):
        triggers = toggle.Triggers(mode=mode, after_calls=after_calls, probability=probability, seed=seed, hang_ms=hang_ms)
        triggers.check()
        return command(*args, triggers=triggers, **kwargs)

    count = click.IntRange(0, toggle.MAX_COUNT)
    options = (
        click.option(
            "--mode",
            default="error",
            show_default=True,
            type=click.Choice(toggle.MODES),
            help="error: calls fail; hang: synchronize, launch and memcpy calls block until the toggle clears or --hang-ms passes.",
        ),
        click.option(
            "--hang-ms",
            default=0,
            show_default=True,
            type=count,
            help="Hang mode: a blocked call fails with the XID's error after this many ms (0: blocks until off).",
        ),
        click.option("--after-calls", default=0, show_default=True, type=count, help="The first N targeted calls of each process pass."),
        click.option(
            "--probability",
            default=1.0,
            show_default=True,
            type=FiniteFloat(0.0, 1.0, low_open=True),
            help="Each targeted call after that fails with this probability (0 < P <= 1).",
        ),
        click.option("--seed", default=0, show_default=True, type=count, help="Seed of the per-process draw sequence for --probability."),
    )
    for option in reversed(options):
        merged = option(merged)
    return merged
