"""`faultflow step verify-inference`: the steady-state gate before injecting, or the wait for recovery after.

Outputs (under --outputs-dir): records.jsonl, events.jsonl, gate.json or recover.json, and the Argo
parameter files `success_rate` and `passed` (shared with `load`: `steps.commands._inference`).
"""

from __future__ import annotations

import click

from steps.commands._inference import _outputs, _run_mode, _target, common_options
from steps.errors import BadInput, CheckFailed
from steps.event_names import EventName, Phase
from steps.options import FRACTION, SECONDS


@click.command("verify-inference")
@click.option(
    "--mode",
    type=click.Choice(["gate", "recover"]),
    required=True,
    help="gate: N requests must meet the threshold; recover: wait until a full window meets it.",
)
@click.option("--threshold", type=FRACTION, default=0.9, show_default=True, help="Success rate required (0-1].")
@click.option("--requests", type=click.IntRange(1, 100000), default=None, help="gate: requests to send [10].")
@click.option("--window", type=click.IntRange(1, 10000), default=None, help="recover: sliding window in requests [10].")
@click.option("--deadline", type=SECONDS, default=None, help="recover: seconds to wait for recovery [900].")
@common_options(default_rate=2.0, default_concurrency=1)
def command(
    mode, threshold, requests, window, deadline, url, api, model, prompt, max_tokens, timeout, rate, concurrency, phase, outputs_dir
):
    """Check inference: a steady-state gate before injecting, or wait for recovery after a fault."""
    if mode == "gate" and (window is not None or deadline is not None):
        raise BadInput("--window and --deadline apply to --mode recover")
    if mode == "recover" and requests is not None:
        raise BadInput("--requests applies to --mode gate")
    target = _target(url, api, model, prompt, max_tokens, timeout)
    out = _outputs(outputs_dir)
    phase = phase or (Phase.BASELINE if mode == "gate" else Phase.RECOVERY)

    from steps.inference.modes import run_gate, run_recover

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
        log(EventName.INFERENCE_RECOVERED, time_recovered=result.recovered_at, success_rate=rate_now, window=window or 10)
    if result.passed:
        log(EventName.CHECK_PASSED, check=check, success_rate=rate_now, requests=result.tally.completed)
        return
    if mode == "gate":
        reason = f"steady-state gate: {result.tally.ok}/{requests or 10} requests succeeded, below threshold {threshold:g}"
    else:
        reason = f"inference did not recover within {deadline or 900.0:g}s (window {window or 10}, threshold {threshold:g})"
    log(EventName.CHECK_FAILED, check=check, reason=reason, outcomes=summary["outcomes"])
    raise CheckFailed(reason)
