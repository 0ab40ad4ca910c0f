"""What `verify-inference` and `load` share: the frontend options, their validation and one run of a mode.

Every option is validated before anything is written; httpx and asyncio work are imported lazily.
Outputs (under --outputs): records.jsonl (one line per request, appended), events.jsonl, <mode>.json
(the summary) and Argo parameter files `success_rate` and `passed`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import click

from steps.errors import BadInput, InfrastructureError
from steps.event_names import EventName
from steps.options import RATE, FiniteFloat, Name

RECORDS_FILE = "records.jsonl"


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"--url must be an http(s) URL of the frontend, e.g. http://my-dgd-frontend:8000, got {url!r}")
    if parts.query or parts.fragment:
        raise BadInput(f"--url must not carry a query or fragment, got {url!r}")
    if parts.path.rstrip("/").endswith(("/completions", "/models")):
        raise BadInput(f"--url is the frontend's base URL (the API path is added), got {url!r}")
    try:
        parts.port
    except ValueError as error:
        raise BadInput(f"--url has an invalid port: {url!r}") from error
    return url.rstrip("/")


def _outputs_dir(path: str) -> Path:
    outputs = Path(path)
    if outputs.exists() and not outputs.is_dir():
        raise BadInput(f"--outputs {path} exists and is not a directory")
    return outputs


def _create_outputs(outputs: Path) -> None:
    try:
        outputs.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InfrastructureError(f"cannot create outputs directory {outputs}: {error.strerror}") from error


def common_options(default_rate: float, default_concurrency: int):
    def decorate(command):
        for option in reversed(
            [
                click.option("--url", required=True, help="Frontend base URL, e.g. http://vllm-agg-frontend.ns.svc:8000."),
                click.option("--api", type=click.Choice(["chat", "completions"]), default="chat", show_default=True,
                             help="/v1/chat/completions or /v1/completions."),
                click.option("--model", default=None, help="Model name; discovered from /v1/models when omitted."),
                click.option("--prompt", default="Say hello in one short sentence.", show_default=True),
                click.option("--max-tokens", type=click.IntRange(1, 65536), default=16, show_default=True),
                click.option("--timeout", type=FiniteFloat(0.0, 3600.0, low_open=True), default=30.0, show_default=True,
                             help="Seconds one request may take, start to end."),
                click.option("--rate", type=RATE, default=default_rate, show_default=True, help="Requests started per second."),
                click.option("--concurrency", type=click.IntRange(1, 4096), default=default_concurrency, show_default=True,
                             help="Requests in flight at most."),
                click.option("--phase", type=Name(), default=None, help="Phase label stored in each record."),
                click.option("--outputs", default="outputs", show_default=True, help="Directory for records, events, summary."),
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


def _run_mode(mode: str, target, rate: float, concurrency: int, grace: float, outputs: Path, phase: str | None, body):
    """Open the outputs, run `body(client, pace, writer)` on one event loop, write the summary."""
    import asyncio

    from steps.event_log import EVENTS_FILE, EventLog
    from steps.inference.client import InferenceClient, WallClock, new_http_client
    from steps.inference.driver import Pace
    from steps.inference.records import RecordWriter

    _create_outputs(outputs)
    step = "load" if mode == "load" else "verify-inference"
    log = EventLog(step, outputs / EVENTS_FILE)
    source = f"{mode}-{uuid.uuid4().hex[:8]}"
    records_path = outputs / RECORDS_FILE
    try:
        writer = RecordWriter(records_path)
    except OSError as error:
        raise InfrastructureError(f"cannot open {records_path}: {error.strerror}") from error

    async def main():
        async with new_http_client(concurrency, target.timeout) as http:
            client = InferenceClient(target, http, WallClock(), source)
            return await body(client, Pace(rate=rate, concurrency=concurrency, grace=grace), writer)

    if mode == "load":
        log.emit(EventName.LOAD_STARTED, url=target.base_url, api=target.api, rate=rate, concurrency=concurrency, source=source)
    try:
        result = asyncio.run(main())
    finally:
        writer.close()
    summary = {"source": source, "url": target.base_url, "api": target.api, "phase": phase, **result.as_dict()}
    (outputs / f"{mode}.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    rate_text = "" if result.tally.success_rate is None else f"{result.tally.success_rate:.6f}"
    (outputs / "success_rate").write_text(rate_text + "\n")
    (outputs / "passed").write_text(("true" if result.passed else "false") + "\n")
    return result, log, summary
