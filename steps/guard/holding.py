"""When a stop condition fires: held at every sample for its `for` duration (Prometheus' `for`).

Pure bookkeeping on the samples the watcher takes, so it is tested without a cluster or a clock:
`observe(t, value)` with `value` None for an interval without data, which neither holds nor resets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from steps.guard.conditions import Condition


@dataclass
class Holding:
    condition: Condition
    since: float | None = None  # time of the first sample of the current unbroken run of true samples
    last_value: float | None = field(default=None)

    def observe(self, t: float, value: float | None) -> bool:
        """Feed one sample taken at `t` (seconds); True once the condition has held for its duration."""
        if value is None:
            return False  # no evidence either way: the run of true samples goes on, but nothing fires on it
        self.last_value = value
        if not self.condition.holds(value):
            self.since = None
            return False
        if self.since is None:
            self.since = t
        return self.fired_at(t)

    def fired_at(self, t: float) -> bool:
        return self.since is not None and t - self.since >= self.condition.for_s
