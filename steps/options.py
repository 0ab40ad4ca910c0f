"""Every click parameter type and shared option decorator of the step commands. Bad values become click
usage errors, which `steps.cli.run` turns into one line on stderr and exit 2."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

import click

from steps.errors import BadInput
from steps.gpu import toggle
from steps.gpu.posture import EXPECTS
from steps.outputs import Outputs
from steps.run.context import RunContext

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


class FaultDuration(Duration):
    """How long a fault stays on: a duration of at most 24 h (the shim reads a longer one as off)."""

    def convert(self, value: Any, param, ctx) -> float:
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds) or seconds <= 0:
            self.fail(f"duration {value!r} must be positive", param, ctx)
        if seconds * 1000 > toggle.MAX_DURATION_MS:
            self.fail(f"{value!r} is longer than {toggle.MAX_DURATION_MS // 3_600_000}h, the longest a fault may stay on", param, ctx)
        return seconds


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
        from steps.gpu.xids import XID_RANGE, catalogue

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


class Pattern(click.ParamType):
    """A string a regular expression accepts in full, e.g. a Chaos Mesh latency (`100ms`) or rate (`10mbps`)."""

    def __init__(self, pattern: re.Pattern[str], what: str, example: str):
        self.pattern, self.name, self.example = pattern, what, example

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or not self.pattern.match(value):
            self.fail(f"{value!r} is not a {self.name} (e.g. {self.example})", param, ctx)
        return value


def common_cluster_options(func):
    """--kubeconfig/--context: where the API server is (default: in-cluster or KUBECONFIG)."""
    func = click.option("--context", default=None, help="kubeconfig context.")(func)
    func = click.option(
        "--kubeconfig", default=None, type=click.Path(dir_okay=False), help="kubeconfig file (default: in-cluster, then KUBECONFIG)."
    )(func)
    return func


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


def run_options(func=None, *, outputs: bool = True):
    """--run-id, --namespace, --outputs-dir (unless `outputs=False`) and the cluster options of a step
    that acts on a run. The outputs directory is checked first; the command gets `run_id`, `namespace`
    and `open_run`, which it calls once its own checks passed: it connects and returns the
    `RunContext`, so bad input (exit 2) is reported before cluster credentials are needed (exit 3)."""

    def decorate(command):
        @functools.wraps(command)
        def opened(*args, kubeconfig: str | None, context: str | None, outputs_dir: str | None = None, **kwargs):
            out = Outputs(outputs_dir)
            out.check()
            return command(*args, open_run=functools.partial(RunContext.connect, kubeconfig, context, out), **kwargs)

        opened = common_cluster_options(opened)
        if outputs:
            opened = outputs_option()(opened)
        opened = click.option(
            "--namespace",
            required=True,
            type=K8sName(label=True),
            help="Namespace of the run's workload (opted in; the run's ledger lives in faultflow's namespace).",
        )(opened)
        return click.option("--run-id", required=True, type=RunId())(opened)

    return decorate(func) if func is not None else decorate


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


class HttpUrl(click.ParamType):
    """An http(s) base URL (a server's root, e.g. Prometheus'), or "" for "none given"."""

    name = "url"

    def convert(self, value, param, ctx):
        from urllib.parse import urlsplit

        if value is None or value == "":
            return ""
        parts = urlsplit(str(value))
        try:
            parts.port  # noqa: B018 - reading the property is what validates the port
        except ValueError:
            self.fail(f"{value!r} has an invalid port", param, ctx)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            self.fail(f"{value!r} must be an http(s) URL without query or fragment, e.g. http://prometheus.monitoring:9090", param, ctx)
        return str(value).rstrip("/")


RATE = FiniteFloat(0.0, 10000.0, low_open=True)
SECONDS = FiniteFloat(0.0, 86400.0, low_open=True)
FRACTION = FiniteFloat(0.0, 1.0, low_open=True)


class Window(Duration):
    """A duration, or 0 for "no window" (NVSentinel with dedup off)."""

    name = "duration|0"

    def convert(self, value: Any, param, ctx) -> float:
        if isinstance(value, str) and value.strip() == "0":
            return 0.0
        return super().convert(value, param, ctx)


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


def expect_options(command: Callable) -> Callable:
    """`--expect` and its alias `--expect-remediation` (true → cordon, false → none), kept for one release."""

    def alias(ctx: click.Context, _param, value):
        if value is not None:
            ctx.meta["expect_alias"] = "cordon" if value else "none"
        return value

    command = click.option(
        "--expect-remediation",
        "expect_remediation",
        default=None,
        type=click.BOOL,
        expose_value=False,
        callback=alias,
        help="Deprecated alias: true = --expect cordon, false = --expect none.",
    )(command)
    return click.option(
        "--expect",
        default="auto",
        show_default=True,
        type=click.Choice(EXPECTS),
        help="What NVSentinel must do: cordon, annotate (dry-run / monitor-only), none; auto: from fault-quarantine's configuration.",
    )(command)


def chosen_expect(expect: str) -> str:
    """--expect, or what the deprecated alias asked for (both given and different: bad input)."""
    alias = click.get_current_context().meta.get("expect_alias")
    if alias is None:
        return expect
    if expect != "auto" and expect != alias:
        raise BadInput(f"--expect {expect} contradicts --expect-remediation (= --expect {alias})")
    return alias
