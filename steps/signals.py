"""SIGTERM as an exception: Argo stops a step with SIGTERM, and the step must revert its partial change before it exits."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from steps.errors import InfrastructureError


class Terminated(InfrastructureError):
    """SIGTERM arrived (Argo stops a step this way); raised where the step is so it can revert."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` in the main thread, so `except`/`finally` blocks can
    undo a partial change before the process exits."""

    def handler(signum, frame):
        # One-shot: a second SIGTERM (Argo's retry of the stop, a user pressing twice) must not
        # interrupt the revert the first one started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
