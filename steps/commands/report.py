"""`faultflow step report`: the journal, JUnit, plot, summary and metrics every scenario ends with.

Checks: the report's own (records, baseline, fault injected, recovered, the optional bounds), every
step's, and the PromQL probes given with --check (`steps.report.probes`). report.json carries the
run's resilience score (`steps.report.score`).

Outputs (under --outputs-dir): report.json, junit.xml, timeline.png, summary.md, metrics.prom and
metrics/<figure> (one number per file, for Argo `valueFrom.path`). Exit 0 when every check passed,
1 when the verdict is a failure (so `argo submit --wait` fails CI), 2 on bad input.
"""

from __future__ import annotations

import json

import click

from steps.errors import BadInput, CheckFailed, InfrastructureError
from steps.event_names import EventName
from steps.events import emit
from steps.options import FRACTION, SECONDS, HttpUrl, Name, RunId, outputs_option
from steps.outputs import Outputs
from steps.report.probes import ProbeTime

OUTPUT_FILES = ("report.json", "junit.xml", "timeline.png", "summary.md", "metrics.prom")


@click.command("report")
@click.option("--input", "inputs", multiple=True, required=True, help="Event and record files, or directories of them (repeatable).")
@outputs_option(default="outputs", help="Directory for the report files.", required=True)
@click.option("--scenario", type=Name(), default="scenario", show_default=True, help="Scenario name (suite name, metric label).")
@click.option("--run-id", type=RunId(), default=None, help="Run id, e.g. the Argo workflow name.")
@click.option("--threshold", type=FRACTION, default=0.9, show_default=True, help="Success rate that counts as healthy.")
@click.option("--window", type=click.IntRange(1, 10000), default=10, show_default=True, help="Recovery window in requests.")
@click.option("--expect-fault/--no-expect-fault", default=True, show_default=True, help="Fail when no fault_injected event.")
@click.option("--max-recovery-seconds", type=SECONDS, default=None, help="Fail when recovery took longer.")
@click.option("--max-detection-seconds", type=SECONDS, default=None, help="Fail when detection took longer.")
@click.option("--min-availability", type=FRACTION, default=None, help="Fail when availability during the fault was lower.")
@click.option(
    "--expect-workload-reached",
    is_flag=True,
    help="Require a fault_reached_workload event naming a worker that logged failing CUDA calls (gpu-fault, cuda-only).",
)
@click.option(
    "--prometheus-url",
    type=HttpUrl(),
    default="",
    help="Prometheus scraping NVSentinel: its quarantine and eviction durations for the run's window go beside ours "
    "(evidence: an unreachable Prometheus is reported, never a failure). Empty: skip.",
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="'promql:EXPR OP VALUE'",
    help="A PromQL probe against --prometheus-url, one check of the verdict (repeatable): the instant query EXPR must give "
    "one number, compared with OP (< <= > >= == !=) and VALUE, e.g. 'promql:sum(up{job=\"nvsentinel\"}) >= 1'. "
    "No series, several series or no answer: the check fails.",
)
@click.option(
    "--probe-time",
    type=click.Choice([t.value for t in ProbeTime]),
    default=ProbeTime.REPORT.value,
    show_default=True,
    help="When the --check probes are evaluated: when the report is built, or at the run's last event or record.",
)
@click.option("--no-plot", is_flag=True, help="Skip timeline.png.")
def command(
    inputs,
    outputs_dir,
    scenario,
    run_id,
    threshold,
    window,
    expect_fault,
    max_recovery_seconds,
    max_detection_seconds,
    min_availability,
    expect_workload_reached,
    prometheus_url,
    checks,
    probe_time,
    no_plot,
):
    """Build the run's report from every step's events and the inference records."""
    from steps.report.inputs import input_files, read_inputs
    from steps.report.journal import Criteria, build_report
    from steps.report.probes import parse_checks

    probes = parse_checks(checks)
    if probes and not prometheus_url:
        raise BadInput("--check promql:… needs --prometheus-url (the Prometheus the probes ask)")
    outputs = Outputs(outputs_dir)
    outputs.check()
    files = input_files(list(inputs))
    if not files:
        raise BadInput("--input: no event or record files found (.jsonl, .ndjson, .log, .txt, .json)")
    criteria = Criteria(
        threshold=threshold,
        window=window,
        expect_fault=expect_fault,
        max_recovery_s=max_recovery_seconds,
        max_detection_s=max_detection_seconds,
        min_availability=min_availability,
        expect_workload_reached=expect_workload_reached,
    )
    prometheus = None
    if prometheus_url:
        from steps.report.prometheus import PrometheusApi

        prometheus = PrometheusApi(prometheus_url)
    journal = build_report(
        read_inputs(files), criteria, scenario, run_id, prometheus, probes, probe_at_run_end=probe_time == ProbeTime.RUN_END.value
    )
    mttr = journal.get("nvsentinel_mttr")
    if mttr is not None and mttr.get("status") != "available":
        click.echo(f"faultflow report: nvsentinel_mttr: unavailable ({mttr.get('why')})", err=True)

    from steps.report.junit import write_junit
    from steps.report.markdown import render_markdown
    from steps.report.metrics import write_metrics

    out = outputs.created()
    try:
        (out / "report.json").write_text(json.dumps(journal, indent=1, allow_nan=False, default=str) + "\n")
        write_junit(journal, out / "junit.xml")
        summary = render_markdown(journal)
        (out / "summary.md").write_text(summary)
        write_metrics(journal, out)
        if not no_plot:
            from steps.report.plot import write_timeline

            write_timeline(journal, out / "timeline.png")
    except OSError as error:
        raise InfrastructureError(f"cannot write the report to {out}: {error.strerror}") from error
    failed = [f"{c['classname']}.{c['name']}" for c in journal["checks"] if c["status"] == "failed"]
    emit("report", EventName.REPORT_WRITTEN, verdict=journal["verdict"], failed_checks=failed, outputs=str(out))
    if failed:
        raise CheckFailed(f"scenario {scenario} failed: {', '.join(failed)}")
