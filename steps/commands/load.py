"""`faultflow step load`: inference traffic for the whole scenario, every request recorded; stops on SIGTERM.

Open loop: a hanging request does not hold back the schedule. Outputs as verify-inference's
(`steps.commands._inference`), with load.json as the summary.
"""

from __future__ import annotations

from pathlib import Path

import click

from steps.commands._inference import _outputs, _run_mode, _target, common_options
from steps.errors import BadInput
from steps.event_names import EventName
from steps.options import SECONDS, FiniteFloat


@click.command("load")
@click.option("--duration", type=SECONDS, default=None, help="Stop after this many seconds (default: until stopped).")
@click.option("--stop-file", default=None, help="Stop when this file appears.")
@click.option(
    "--grace",
    type=FiniteFloat(0.0, 600.0),
    default=5.0,
    show_default=True,
    help="Seconds in-flight requests get to finish once stopped; the rest are recorded as cancelled.",
)
@common_options(default_rate=2.0, default_concurrency=8)
def command(duration, stop_file, grace, url, api, model, prompt, max_tokens, timeout, rate, concurrency, phase, outputs_dir):
    """Drive inference traffic for the whole scenario, recording every request (stops on SIGTERM)."""
    target = _target(url, api, model, prompt, max_tokens, timeout)
    out = _outputs(outputs_dir)
    stop_path = None
    if stop_file is not None:
        stop_path = Path(stop_file)
        if not stop_path.parent.is_dir():
            raise BadInput(f"--stop-file directory {stop_path.parent} does not exist")
        if stop_path.exists():
            raise BadInput(f"--stop-file {stop_file} already exists: the load would stop at once")

    from steps.inference.modes import run_load

    async def body(client, pace, writer):
        return await run_load(client, pace, writer, duration, stop_path, phase)

    result, log, summary = _run_mode("load", target, rate, concurrency, grace, out, phase, body)
    log(
        EventName.LOAD_STOPPED,
        reason=result.stop_reason,
        requests=result.tally.completed,
        ok=result.tally.ok,
        success_rate=result.tally.success_rate,
        outcomes=summary["outcomes"],
        source=summary["source"],
    )
