"""What `verify-inference` and `load` share: the frontend options, their validation and one run of a mode.

Every option is validated before anything is written; httpx and asyncio work are imported lazily.
Outputs (under --outputs-dir): records.jsonl (one line per request, appended), events.jsonl (unless
$FAULTFLOW_EVENTS_FILE names another events file: `steps.events`), <mode>.json (the summary) and Argo
parameter files `success_rate` and `passed`.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import uuid
from urllib.parse import urlsplit

import click

from steps.errors import BadInput, InfrastructureError
from steps.event_names import EventName
from steps.events import EVENTS_FILE, emit
from steps.options import RATE, FiniteFloat, Name, outputs_option
from steps.outputs import Outputs

RECORDS_FILE = "records.jsonl"


ALLOW_EXTERNAL = "faultflow.allow_external_frontend"


def in_cluster_host(host: str) -> bool:
    """A host the frontend of an in-cluster Dynamo deployment can have (issue 15, Low: `frontend-url`
    could point anywhere — the metadata service, an outside host given the run's prompts): a Service
    name (`name`, `name.ns.svc`, `name.ns.svc.<cluster domain>`), a cluster IP (private address space)
    or loopback (a port-forward, the lab). Link-local (cloud metadata) and public addresses are not."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        labels = host.lower().rstrip(".").split(".")
        return host == "localhost" or len(labels) == 1 or (len(labels) >= 3 and labels[2] == "svc")
    return ip.is_loopback or (ip.is_private and not ip.is_link_local and not ip.is_unspecified and not ip.is_multicast)


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"--url must be an http(s) URL of the frontend, e.g. http://my-dgd-frontend:8000, got {url!r}")
    context = click.get_current_context(silent=True)
    allowed = bool(context and context.meta.get(ALLOW_EXTERNAL))
    if not allowed and not in_cluster_host(parts.hostname):
        raise BadInput(
            f"--url host {parts.hostname!r} is not an in-cluster Service (name.namespace.svc) or cluster IP: "
            "pass --allow-external-frontend to send the run's traffic there anyway"
        )
    if parts.query or parts.fragment:
        raise BadInput(f"--url must not carry a query or fragment, got {url!r}")
    if parts.path.rstrip("/").endswith(("/completions", "/models")):
        raise BadInput(f"--url is the frontend's base URL (the API path is added), got {url!r}")
    try:
        parts.port  # noqa: B018 - reading the property is what validates the port
    except ValueError as error:
        raise BadInput(f"--url has an invalid port: {url!r}") from error
    return url.rstrip("/")


def _outputs(path: str) -> Outputs:
    outputs = Outputs(path)
    outputs.check()
    return outputs


def common_options(default_rate: float, default_concurrency: int):
    def decorate(command):
        for option in reversed(
            [
                click.option("--url", required=True, help="Frontend base URL, e.g. http://vllm-agg-frontend.ns.svc:8000."),
                click.option(
                    "--allow-external-frontend",
                    is_flag=True,
                    expose_value=False,
                    callback=lambda ctx, _param, value: ctx.meta.__setitem__(ALLOW_EXTERNAL, value),
                    help="Allow a --url host outside the cluster (default: Service names, cluster IPs, loopback only).",
                ),
                click.option(
                    "--api",
                    type=click.Choice(["chat", "completions"]),
                    default="chat",
                    show_default=True,
                    help="/v1/chat/completions or /v1/completions.",
                ),
                click.option("--model", default=None, help="Model name; discovered from /v1/models when omitted."),
                click.option("--prompt", default="Say hello in one short sentence.", show_default=True),
                click.option("--max-tokens", type=click.IntRange(1, 65536), default=16, show_default=True),
                click.option(
                    "--timeout",
                    type=FiniteFloat(0.0, 3600.0, low_open=True),
                    default=30.0,
                    show_default=True,
                    help="Seconds one request may take, start to end.",
                ),
                click.option("--rate", type=RATE, default=default_rate, show_default=True, help="Requests started per second."),
                click.option(
                    "--concurrency",
                    type=click.IntRange(1, 4096),
                    default=default_concurrency,
                    show_default=True,
                    help="Requests in flight at most.",
                ),
                click.option("--phase", type=Name(), default=None, help="Phase label stored in each record."),
                outputs_option(default="outputs", help="Directory for records, events, summary.", required=True),
            ]
        ):
            command = option(command)
        return command

    return decorate


def _target(url, api, model, prompt, max_tokens, timeout):
    from steps.inference.client import InferenceTarget

    if model is not None and not model.strip():
        raise BadInput("--model must not be empty (omit it to discover the model)")
    if not prompt.strip():
        raise BadInput("--prompt must not be empty")
    return InferenceTarget(base_url=_base_url(url), api=api, model=model, prompt=prompt, max_tokens=max_tokens, timeout=timeout)


def _run_mode(mode: str, target, rate: float, concurrency: int, grace: float, outputs: Outputs, phase: str | None, body):
    """Open the outputs, run `body(client, pace, writer)` on one event loop, write the summary. Returns
    the result, `log(event, **fields)` (this step's `emit`) and the summary."""
    import asyncio

    from steps.inference.client import InferenceClient, WallClock, new_http_client
    from steps.inference.driver import Pace
    from steps.inference.records import RecordWriter

    step = "load" if mode == "load" else "verify-inference"
    log = functools.partial(emit, step, events_file=outputs.created() / EVENTS_FILE)
    source = f"{mode}-{uuid.uuid4().hex[:8]}"
    records_path = outputs.created() / RECORDS_FILE
    try:
        writer = RecordWriter(records_path)
    except OSError as error:
        raise InfrastructureError(f"cannot open {records_path}: {error.strerror}") from error

    async def main():
        async with new_http_client(concurrency, target.timeout) as http:
            client = InferenceClient(target, http, WallClock(), source)
            return await body(client, Pace(rate=rate, concurrency=concurrency, grace=grace), writer)

    if mode == "load":
        log(EventName.LOAD_STARTED, url=target.base_url, api=target.api, rate=rate, concurrency=concurrency, source=source)
    try:
        result = asyncio.run(main())
    finally:
        writer.close()
    summary = {"source": source, "url": target.base_url, "api": target.api, "phase": phase, **result.as_dict()}
    outputs.write(f"{mode}.json", json.dumps(summary, indent=1, sort_keys=True) + "\n")
    rate_text = "" if result.tally.success_rate is None else f"{result.tally.success_rate:.6f}"
    outputs.write("success_rate", rate_text + "\n")
    outputs.write("passed", ("true" if result.passed else "false") + "\n")
    return result, log, summary
