"""`faultflow step verify-inference` (gate, recover) and `faultflow step load`.

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

from steps import event_names as ev
from steps.cli_types import FRACTION, RATE, SECONDS, FiniteFloat, Name
from steps.errors import BadInput, CheckFailed, InfrastructureError

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
    from steps.inference_client import InferenceTarget

    if model is not None and not model.strip():
        raise BadInput("--model must not be empty (omit it to discover the model)")
    if not prompt.strip():
        raise BadInput("--prompt must not be empty")
    return InferenceTarget(base_url=_base_url(url), api=api, model=model, prompt=prompt, max_tokens=max_tokens, timeout=timeout)


def _run_mode(mode: str, target, rate: float, concurrency: int, grace: float, outputs: Path, phase: str | None, body):
    """Open the outputs, run `body(client, pace, writer)` on one event loop, write the summary."""
    import asyncio

    from steps.event_log import EVENTS_FILE, EventLog
    from steps.inference_client import InferenceClient, WallClock, new_http_client
    from steps.inference_driver import Pace
    from steps.inference_records import RecordWriter

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
        log.emit(ev.LOAD_STARTED, url=target.base_url, api=target.api, rate=rate, concurrency=concurrency, source=source)
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


@click.command("verify-inference")
@click.option("--mode", type=click.Choice(["gate", "recover"]), required=True,
              help="gate: N requests must meet the threshold; recover: wait until a full window meets it.")
@click.option("--threshold", type=FRACTION, default=0.9, show_default=True, help="Success rate required (0-1].")
@click.option("--requests", type=click.IntRange(1, 100000), default=None, help="gate: requests to send [10].")
@click.option("--window", type=click.IntRange(1, 10000), default=None, help="recover: sliding window in requests [10].")
@click.option("--deadline", type=SECONDS, default=None, help="recover: seconds to wait for recovery [900].")
@common_options(default_rate=2.0, default_concurrency=1)
def verify_inference(mode, threshold, requests, window, deadline, url, api, model, prompt, max_tokens, timeout, rate, concurrency, phase, outputs):
    """Check inference: a steady-state gate before injecting, or wait for recovery after a fault."""
    if mode == "gate" and (window is not None or deadline is not None):
        raise BadInput("--window and --deadline apply to --mode recover")
    if mode == "recover" and requests is not None:
        raise BadInput("--requests applies to --mode gate")
    target = _target(url, api, model, prompt, max_tokens, timeout)
    out = _outputs_dir(outputs)
    phase = phase or (ev.PHASE_BASELINE if mode == "gate" else ev.PHASE_RECOVERY)

    from steps.inference_modes import run_gate, run_recover

    if mode == "gate":
        n = requests or 10

        async def body(client, pace, writer):
            return await run_gate(client, pace, writer, n, threshold, phase)
    else:
        size, wait = window or 10, deadline or 900.0

        async def body(client, pace, writer):
            return await run_recover(client, pace, writer, size, threshold, wait, phase)

    result, log, summary = _run_mode(mode, target, rate, concurrency, 1.0, out, phase, body)
    check = "inference_gate" if mode == "gate" else "inference_recovered"
    rate_now = result.tally.success_rate
    if mode == "recover" and result.passed:
        log.emit(ev.INFERENCE_RECOVERED, time_recovered=result.recovered_at, success_rate=rate_now, window=window or 10)
    if result.passed:
        log.emit(ev.CHECK_PASSED, check=check, success_rate=rate_now, requests=result.tally.completed)
        return
    if mode == "gate":
        reason = f"steady-state gate: {result.tally.ok}/{requests or 10} requests succeeded, below threshold {threshold:g}"
    else:
        reason = f"inference did not recover within {deadline or 900.0:g}s (window {window or 10}, threshold {threshold:g})"
    log.emit(ev.CHECK_FAILED, check=check, reason=reason, outcomes=summary["outcomes"])
    raise CheckFailed(reason)


@click.command("load")
@click.option("--duration", type=SECONDS, default=None, help="Stop after this many seconds (default: until stopped).")
@click.option("--stop-file", default=None, help="Stop when this file appears.")
@click.option("--grace", type=FiniteFloat(0.0, 600.0), default=5.0, show_default=True,
              help="Seconds in-flight requests get to finish once stopped; the rest are recorded as cancelled.")
@common_options(default_rate=2.0, default_concurrency=8)
def load(duration, stop_file, grace, url, api, model, prompt, max_tokens, timeout, rate, concurrency, phase, outputs):
    """Drive inference traffic for the whole scenario, recording every request (stops on SIGTERM)."""
    target = _target(url, api, model, prompt, max_tokens, timeout)
    out = _outputs_dir(outputs)
    stop_path = None
    if stop_file is not None:
        stop_path = Path(stop_file)
        if not stop_path.parent.is_dir():
            raise BadInput(f"--stop-file directory {stop_path.parent} does not exist")
        if stop_path.exists():
            raise BadInput(f"--stop-file {stop_file} already exists: the load would stop at once")

    from steps.inference_modes import run_load

    async def body(client, pace, writer):
        return await run_load(client, pace, writer, duration, stop_path, phase)

    result, log, summary = _run_mode("load", target, rate, concurrency, grace, out, phase, body)
    log.emit(ev.LOAD_STOPPED, reason=result.stop_reason, requests=result.tally.completed, ok=result.tally.ok,
             success_rate=result.tally.success_rate, outcomes=summary["outcomes"], source=summary["source"])
