"""Click parameter types shared by the step commands: bad values become click usage errors, which
`steps.cli.run` turns into one line on stderr and exit 2."""

from __future__ import annotations

import math
import re

import click


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


class Name(click.ParamType):
    """A short identifier (phase, scenario, run id): safe in file names, labels and metric labels."""

    name = "name"
    PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or not self.PATTERN.match(value):
            self.fail(f"{value!r} must be 1-63 letters, digits, '_', '.', '-'", param, ctx)
        return value


RATE = FiniteFloat(0.0, 10000.0, low_open=True)
SECONDS = FiniteFloat(0.0, 86400.0, low_open=True)
FRACTION = FiniteFloat(0.0, 1.0, low_open=True)
