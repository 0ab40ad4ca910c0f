"""`faultflow run SCENARIO (--lab | --kubeconfig PATH) [-p name=value …]`: one scenario, run here.

Registered through the `faultflow.commands` entry point (steps never imports the lab). With `--lab`
the run targets the running lab (`faultflow lab up`): its kubeconfig, its simulated nodes' file
systems for the node-pinned stages, and its deployment as default parameter values. With
`--kubeconfig` it targets any cluster; stages pinned to a node then need `--node-root` (a directory
holding each node's root filesystem, as the lab has) because this runner does not create pods.

Exit code: 0 when every stage (and the report's verdict) passed; otherwise the first failing stage's
exit code (1 a check failed, 2 bad input, 3 infrastructure), or 143 when the run was stopped.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from steps.errors import BadInput, ExitCode
from steps.gpu.nvsentinel import DEDUP_WINDOW_S


def lab_defaults(state: dict) -> dict[str, str]:
    """Parameter values that point a scenario at the lab's deployment (`.lab/state.json`)."""
    window = state.get("nvsentinel_dedup_window_s", DEDUP_WINDOW_S)
    return {
        "namespace": state["namespace"],
        "target": f"dgd/{state['dgd']}",
        "dgd-version": state["dgd_version"],
        "frontend-url": state["frontend_url"],
        # The lab's Prometheus scrapes the NVSentinel simulator: the report reads its MTTR figures there.
        "prometheus-url": state.get("prometheus_url", ""),
        "nvsentinel-namespace": state["nvsentinel_namespace"],
        # The lab's NVSentinel simulator suppresses repeats within its own window; preflight and
        # wait-for-cordon must expect exactly that window.
        "dedup-window": f"{window:g}s" if window else "0",
        # The lab's simulators act within seconds; these keep a stuck run from lasting an hour.
        "cordon-timeout": "60s",
        "eviction-timeout": "120s",
        "recovery-deadline": "120",
        "load-rate": "10",
        "hold": "10s",
    }


def _print_report(evidence: Path, out) -> None:
    summary = evidence / "report" / "summary.md"
    if summary.is_file():
        print("", file=out)
        print(summary.read_text().rstrip(), file=out)
    report = evidence / "report"
    names = ("report.json", "junit.xml", "timeline.png", "metrics.prom", "summary.md")
    files = [str(report / n) for n in names if (report / n).is_file()]
    if files:
        print(f"\nreport: {', '.join(files)}", file=out)


@click.command("run")
@click.argument("scenario_name", metavar="SCENARIO")
@click.option(
    "--lab",
    "lab_dir",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DIR]",
    help="Run against the running lab (default directory .lab).",
)
@click.option("--kubeconfig", type=click.Path(dir_okay=False), default=None, help="Run against this cluster.")
@click.option(
    "--node-root",
    type=click.Path(file_okay=False),
    default=None,
    help="With --kubeconfig: directory holding <node>/ root filesystems for node-pinned stages.",
)
@click.option("-p", "--parameter", "assignments", multiple=True, metavar="NAME=VALUE", help="A scenario parameter.")
@click.option(
    "--evidence",
    type=click.Path(file_okay=False),
    default=None,
    help="Where every stage's outputs and the report go (default: <lab>/runs/<run> or ./faultflow-runs/<run>).",
)
@click.option("--run-namespace", default=None, help="Namespace of the run's Workflow record and locks (default: the target's).")
def command(scenario_name, lab_dir, kubeconfig, node_root, assignments, evidence, run_namespace):
    """Run a scenario here, stage by stage, exactly as its WorkflowTemplate runs under Argo."""
    from lab import run_plan
    from lab.layout import LabDir
    from lab.run_session import RunSession
    from workflows.scenarios import by_name

    try:
        scenario = by_name(scenario_name)
    except KeyError as error:
        raise BadInput(str(error.args[0])) from None
    if (lab_dir is None) == (kubeconfig is None):
        raise BadInput("give exactly one of --lab and --kubeconfig")
    given = run_plan.parse_assignments(assignments)
    defaults: dict[str, str] = {}
    if lab_dir is not None:
        lab = LabDir.resolve(lab_dir or None)
        try:
            state = json.loads(lab.state_file.read_text())
        except (OSError, ValueError):
            raise BadInput(f"no running lab in {lab.root} (start it with `faultflow lab up`)") from None
        defaults = {k: v for k, v in lab_defaults(state).items() if k in {p.name for p in scenario.parameters}}
        kubeconfig_path, node_root_of = lab.kubeconfig, lab.node_root
        runs_root = lab.root / "runs"
    else:
        kubeconfig_path = Path(kubeconfig)
        if not kubeconfig_path.is_file():
            raise BadInput(f"--kubeconfig {kubeconfig}: no such file")
        node_root_of = (lambda node, root=Path(node_root): root / node) if node_root else None
        runs_root = Path("faultflow-runs")
        pinned = [s.name for s in (*scenario.stages, *scenario.exit_stages) if s.pinned_to is not None]
        if pinned and node_root_of is None:
            # Refused before anything runs: finding out at the node stage would leave a half-made fault.
            raise BadInput(
                f"{scenario.name}: stage {', '.join(pinned)} runs on a node; give --node-root "
                "(this runner does not create pods) or submit the WorkflowTemplate to Argo"
            )
    values = run_plan.parameter_values(scenario, {**defaults, **given})
    name = run_plan.run_name(scenario.name)
    plan = run_plan.RunPlan(
        scenario=scenario,
        values=values,
        name=name,
        evidence=Path(evidence).absolute() if evidence else (runs_root / name).absolute(),
        kubeconfig=kubeconfig_path.absolute(),
        namespace=run_namespace or values.get("namespace", "default"),
        node_root=node_root_of,
    )
    session = RunSession(plan, sys.stdout)
    signal.signal(signal.SIGTERM, lambda *_: session.request_stop())
    signal.signal(signal.SIGINT, lambda *_: session.request_stop())
    result = session.run()
    _print_report(plan.evidence, sys.stdout)
    verdict = "passed" if result.exit_code == ExitCode.DONE else f"failed (exit {result.exit_code})"
    print(f"\nrun {name}: {verdict}; evidence in {plan.evidence}", flush=True)
    # Not click's Exit: `steps.cli.run` calls click with standalone_mode=False, where an Exit raised by a
    # command is returned, not raised, and the process then ended 0 whatever the run's outcome.
    sys.exit(result.exit_code)
