"""Option types and helpers every step shares: validated values, outputs, SIGTERM handling."""

from __future__ import annotations

import json
import math
import os
import re
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from steps.errors import BadInput, InfrastructureError

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
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


class K8sName(click.ParamType):
    """A DNS-1123 name (subdomain for objects and nodes, label for namespaces)."""

    def __init__(self, label: bool = False):
        self.label = label
        self.name = "name"

    def convert(self, value: Any, param, ctx) -> str:
        pattern = _DNS1123_LABEL if self.label else _DNS1123_SUBDOMAIN
        if not isinstance(value, str) or not pattern.match(value):
            self.fail(f"{value!r} is not a valid Kubernetes name", param, ctx)
        return value


class RunId(click.ParamType):
    name = "run-id"

    def convert(self, value: Any, param, ctx) -> str:
        if not isinstance(value, str) or not _RUN_ID.match(value):
            self.fail(f"{value!r} is not a run id (lower-case letters, digits and '-', at most 40)", param, ctx)
        return value


class XidType(click.ParamType):
    name = "xid"

    def convert(self, value: Any, param, ctx) -> int:
        from steps.xids import XID_RANGE, catalogue

        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an XID number", param, ctx)
        if number not in catalogue():
            self.fail(f"unknown XID {number}: choose one of {XID_RANGE.start}-{XID_RANGE.stop - 1}", param, ctx)
        return number


class Target(click.ParamType):
    """`dgd/NAME`, `deployment/NAME` or `statefulset/NAME` (a bare NAME means a DGD)."""

    name = "target"
    KINDS = ("dgd", "deployment", "statefulset")

    def convert(self, value: Any, param, ctx) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        kind, sep, name = str(value).partition("/")
        if not sep:
            kind, name = "dgd", kind
        if kind not in self.KINDS or not _DNS1123_SUBDOMAIN.match(name or ""):
            self.fail(f"{value!r} is not KIND/NAME with KIND one of {', '.join(self.KINDS)}", param, ctx)
        return kind, name


class Outputs:
    """Argo reads output parameters from files (`valueFrom.path`); one file per value."""

    def __init__(self, directory: str | None):
        self.directory = Path(directory) if directory else None

    def check(self) -> None:
        """Create the directory, parents included: in a fresh steps container nothing below /tmp
        exists yet (Argo's artifact path is the step's own scratch space, so making it is no change
        to anything the run faults or restores)."""
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BadInput(f"outputs directory {self.directory} cannot be created: {error.strerror}") from None
        if not os.access(self.directory, os.W_OK):
            raise BadInput(f"outputs directory {self.directory} is not writable")

    def write(self, name: str, value: Any) -> None:
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            (self.directory / name).write_text(text)
        except OSError as error:
            raise InfrastructureError(f"cannot write output {name}: {error.strerror}") from None


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


def common_cluster_options(func):
    """--kubeconfig/--context: where the API server is (default: in-cluster or KUBECONFIG)."""
    func = click.option("--context", default=None, help="kubeconfig context.")(func)
    func = click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False), help="kubeconfig file (default: in-cluster, then KUBECONFIG).")(func)
    return func
