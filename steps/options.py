"""Every click parameter type and shared option decorator of the step commands. Bad values become click
usage errors, which `steps.cli.run` turns into one line on stderr and exit 2."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import click

from steps.errors import BadInput
from steps.gpu.posture import EXPECTS
from steps.option_types import (  # noqa: F401 (re-exported: the commands take every option from here)
    Duration,
    FaultDuration,
    FiniteFloat,
    RunId,
    XidType,
    outputs_option,
    parse_duration,
    trigger_options,
)
from steps.outputs import Outputs
from steps.run.context import RunContext

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


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
