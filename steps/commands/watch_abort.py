"""`faultflow step watch-abort`: the stop conditions (`abort-if`) of a run, evaluated while it is live.

Runs as a daemon task beside the fault (Argo stops it with SIGTERM when the DAG is over: exit 0; without
conditions it idles until then).
When a condition fires it
1. emits `aborted` (condition, value, held_s) and the failed check `abort_if`, and writes the output
   file `aborted` — the report prints `aborted: <condition>`;
2. stops its own Workflow the way `argo stop` does (`steps.guard.stop`): Argo stops the running
   steps, and the exit handler's final-cleanup reverts the fault, then the report runs; the Workflow
   ends Failed and carries the condition in its `faultflow.dev/stop-reason` annotation;
3. exits with `ExitCode.ABORTED` (4).

Conditions are parsed before anything else (`steps.guard.conditions`): a malformed one is exit 2.
Preflight parses the same parameter, so a bad condition stops the run before anything is injected.
"""

from __future__ import annotations

import click

from steps.commands._inference import ALLOW_EXTERNAL, _target
from steps.errors import Aborted, BadInput, InfrastructureError
from steps.event_names import EventName
from steps.events import emit
from steps.options import RATE, FiniteFloat, HttpUrl, K8sName, RunId, common_cluster_options, outputs_option
from steps.outputs import Outputs

STEP = "watch-abort"
STOP_ATTEMPTS = 5


@click.command(STEP)
@click.option("--abort-if", "abort_if", default="", help="Stop conditions, ';'-separated (README 'Stop conditions'); empty: exit 0.")
@click.option("--url", default="", help="Frontend base URL, probed for availability and p99 conditions.")
@click.option(
    "--allow-external-frontend",
    is_flag=True,
    expose_value=False,
    callback=lambda ctx, _param, value: ctx.meta.__setitem__(ALLOW_EXTERNAL, value),
    help="Allow a --url host outside the cluster.",
)
@click.option("--api", type=click.Choice(["chat", "completions"]), default="chat", show_default=True)
@click.option("--model", default=None, help="Model name; discovered from /v1/models when omitted.")
@click.option("--probe-rate", type=RATE, default=2.0, show_default=True, help="Probe requests started per second.")
@click.option("--probe-timeout", type=FiniteFloat(0.0, 600.0, low_open=True), default=10.0, show_default=True)
@click.option("--prometheus-url", type=HttpUrl(), default="", help="Prometheus for promql conditions.")
@click.option("--interval", type=FiniteFloat(0.1, 60.0), default=1.0, show_default=True, help="Seconds between samples.")
@click.option("--run-id", required=True, type=RunId())
@click.option("--workflow-name", default=None, help="The Workflow to stop ({{workflow.name}}); none: only report.")
@click.option("--workflow-namespace", default=None, type=K8sName(label=True), help="Default: faultflow's namespace.")
@outputs_option()
@common_cluster_options
def command(
    abort_if,
    url,
    api,
    model,
    probe_rate,
    probe_timeout,
    prometheus_url,
    interval,
    run_id,
    workflow_name,
    workflow_namespace,
    outputs_dir,
    kubeconfig,
    context,
):
    """Evaluate the run's stop conditions while the fault is live; stop the Workflow when one fires."""
    from steps.guard.conditions import Metric, check_sources, parse_conditions

    conditions = parse_conditions(abort_if)
    check_sources(conditions, prometheus_url)
    metrics = {c.metric for c in conditions}
    probe = None
    if metrics & {Metric.AVAILABILITY, Metric.P99}:
        if not url:
            raise BadInput("availability and p99 conditions need --url (the frontend)")
        probe = _target(url, api, model, "Say hello in one short sentence.", 16, probe_timeout)
    outputs = Outputs(outputs_dir)
    outputs.check()
    if outputs_dir:
        outputs.created()  # every input checked: from here on the step leaves its evidence there
    if not conditions:
        # Idle until the run ends rather than exit at once: Argo v4 marks a daemon that ends on its own
        # Failed, which would fail every run without stop conditions (tests/lab/test_real_argo_abort.py).
        _idle(
            lambda: emit(STEP, EventName.WATCH_ARMED, run_id=run_id, conditions=[], why="no abort-if conditions: idle until the run ends")
        )
        return
    from steps.guard.watcher import Sources, Watcher
    from steps.kube.client import connect
    from steps.report.prometheus import PrometheusApi
    from steps.run import install

    kube = connect(kubeconfig, context) if (workflow_name or metrics & {Metric.BREAKER, Metric.CORDONED}) else None
    sources = Sources(probe=probe, probe_rate=probe_rate, prometheus=PrometheusApi(prometheus_url) if prometheus_url else None, kube=kube)
    watcher = Watcher(
        conditions,
        sources,
        lambda source, why: emit(STEP, EventName.SKIPPED, run_id=run_id, source=source, why=f"no data from {source}: {why}"[:300]),
    )
    fired = _watch(
        watcher,
        interval,
        lambda: emit(STEP, EventName.WATCH_ARMED, run_id=run_id, conditions=[c.text for c in conditions], interval_s=interval),
    )
    if fired is None:
        emit(STEP, EventName.STEP_FINISHED, run_id=run_id, exit_code=0, why="stopped before any condition fired")
        return
    text = fired.condition.text
    emit(STEP, EventName.ABORTED, run_id=run_id, condition=text, value=fired.value, held_s=fired.held_s)
    emit(STEP, EventName.CHECK_FAILED, check="abort_if", reason=f"aborted: {text} (value {fired.value:g})")
    outputs.write("aborted", text)
    if workflow_name and kube is not None:
        namespace = workflow_namespace or install.home_namespace()
        result = _stop(kube, namespace, workflow_name, f"abort-if: {text}")
        emit(STEP, EventName.WORKFLOW_STOPPED, run_id=run_id, workflow=workflow_name, stopped=result.stopped, why=result.why or None)
    raise Aborted(f"aborted: {text} (value {fired.value:g}, held {fired.held_s:g}s)")


def _watch(watcher, interval: float, armed):
    """Run the watch on one event loop; SIGTERM/SIGINT (Argo ending the daemon) end it quietly —
    from the moment `armed` announces it, so no signal can fall between the two."""
    import asyncio
    import signal

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (in-process tests)
                pass
        armed()
        return await watcher.run(interval, stop)

    return asyncio.run(main())


def _idle(armed) -> None:
    """Wait for SIGTERM/SIGINT (the end of the run), doing nothing; blocked first, so none is missed."""
    import signal

    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    armed()
    signal.sigwait(signals)


def _stop(kube, namespace: str, name: str, reason: str):
    """The stop must land: the fault stays live until it does. Retried on API errors with backoff."""
    import time

    from steps.guard.stop import stop_workflow

    last: Exception | None = None
    for attempt in range(STOP_ATTEMPTS):
        try:
            return stop_workflow(kube, namespace, name, reason)
        except InfrastructureError as error:
            last = error
            time.sleep(min(8.0, 0.5 * 2**attempt))  # the API server's recovery, not a condition we could watch
    raise InfrastructureError(f"could not stop workflow {namespace}/{name} after {STOP_ATTEMPTS} attempts: {last}")
