"""`faultflow lab up|down|status`: the local lab (registered through the `faultflow.commands` entry point).

`up` starts the supervisor (`lab.supervisor`) in the background and returns once the lab serves;
a second `up` says the lab is already up. `down` stops the supervisor, then makes sure no process it
started is left (its process group) and removes the lab directory. `status` says what runs (exit 1
when the lab is down).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from lab.layout import LabDir
from steps.errors import CheckFailed, InfrastructureError

UP_TIMEOUT_S = 180


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def supervisor_pid(lab: LabDir) -> int | None:
    """The running supervisor of this lab directory (a recycled pid is not mistaken for it)."""
    try:
        pid = int(lab.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) and "lab.supervisor" in _cmdline(pid) else None


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (the supervisor and everything it started)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def read_state(lab: LabDir) -> dict | None:
    try:
        return json.loads(lab.state_file.read_text())
    except (OSError, ValueError):
        return None


def _wait(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)  # polling a process table / file with a deadline
    return True


def _summary(state: dict) -> list[str]:
    gpu = [n["name"] for n in state["nodes"] if n["gpus"]]
    cpu = [n["name"] for n in state["nodes"] if not n["gpus"]]
    procs = ", ".join(f"{k} pid {v}" for k, v in state["processes"].items())
    return [
        f"  supervisor     pid {state['pid']} (logs in {state['dir']}/logs)",
        f"  control plane  {state['server']} ({procs})",
        f"  kubeconfig     {state['kubeconfig']}",
        f"  nodes          {' '.join(gpu)} (GPU, {state['nodes'][0]['gpus']} each), {' '.join(cpu)}",
        f"  namespace      {state['namespace']} (faultflow.dev/allow-faults=true)",
        f"  dgd            {state['dgd']} ({state['dgd_version']})",
        f"  frontend       {state['frontend_url']} (OpenAI API)",
        f"  simulators     {', '.join(state['simulators'])}; NVSentinel in namespace {state['nvsentinel_namespace']}",
        f"  prometheus     {state.get('prometheus_url') or '-'} (scrapes the NVSentinel simulator's metrics every 1s)",
    ]


def _remove(lab: LabDir) -> None:
    shutil.rmtree(lab.root, ignore_errors=True)


def stop_lab(lab: LabDir, timeout_s: float = 60) -> list[int]:
    """Stops the supervisor (SIGTERM: it stops its simulators and control plane), then SIGKILLs any
    process left in its group. Returns the pids that had to be killed."""
    pid = supervisor_pid(lab)
    if pid is None:
        return []
    os.kill(pid, signal.SIGTERM)
    _wait(lambda: not _alive(pid), timeout_s)
    left = group_members(pid)  # the supervisor leads its own session: its pgid is its pid
    if left:
        os.killpg(pid, signal.SIGKILL)
        _wait(lambda: not group_members(pid), 10)
    return left


@click.group("lab")
def lab() -> None:
    """The local lab: a real kube-apiserver with simulated GPU nodes, Dynamo operator, workers and NVSentinel."""


dir_option = click.option("--dir", "directory", default=None, help="Lab directory (default: FAULTFLOW_LAB_DIR or .lab).")


@lab.command("up")
@dir_option
@click.option("--dgd-version", default="v1beta1", show_default=True, type=click.Choice(["v1alpha1", "v1beta1"]))
@click.option("--gpu-nodes", default=3, show_default=True, type=click.IntRange(1, 16))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16), help="GPU worker replicas of the DGD.")
@click.option(
    "--nvsentinel",
    "nvsentinel_config",
    default="{}",
    help="JSON: NVSentinel simulator delays, breaker, "
    "dedup and posture (detect_delay_s, quarantine_delay_s, drain_delay_s, eviction_grace_s, breaker_percentage, "
    "breaker_max_nodes, breaker_enabled, dedup_window_s, posture: enforce|dry-run|monitor-only, …).",
)
@click.option("--timeout", default=UP_TIMEOUT_S, show_default=True, type=click.IntRange(1), help="Seconds to wait for the lab.")
def up(directory, dgd_version, gpu_nodes, workers, nvsentinel_config, timeout) -> None:
    """Start the lab in the background (idempotent); prints what it started and how long it took."""
    from lab.nvsentinel_simulator import NvsentinelConfig

    try:
        NvsentinelConfig(**json.loads(nvsentinel_config))
    except (ValueError, TypeError) as error:
        raise click.BadParameter(f"not NVSentinel simulator settings: {error}", param_hint="--nvsentinel") from None
    start = time.monotonic()
    where = LabDir.resolve(directory)
    if supervisor_pid(where) is not None:
        state = read_state(where)
        click.echo(f"lab: already up in {where.root}")
        for line in _summary(state) if state else []:
            click.echo(line)
        return
    _remove(where)  # what a crashed lab left behind
    where.logs.mkdir(parents=True)
    argv = [
        sys.executable,
        "-m",
        "lab.supervisor",
        "--dir",
        str(where.root),
        "--dgd-version",
        dgd_version,
        "--gpu-nodes",
        str(gpu_nodes),
        "--workers",
        str(workers),
        "--nvsentinel",
        nvsentinel_config,
    ]
    with open(where.logs / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=Path.cwd()
        )
    ready = _wait(lambda: read_state(where) is not None or proc.poll() is not None, timeout, 0.1)
    state = read_state(where)
    if state is None:
        tail = "\n".join((where.logs / "supervisor.log").read_text(errors="replace").splitlines()[-15:])
        if proc.poll() is None:
            stop_lab(where)
        _remove(where)
        reason = f"did not come up within {timeout}s" if not ready or proc.returncode is None else f"supervisor exited ({proc.returncode})"
        raise InfrastructureError(f"lab {reason}: {' | '.join(tail.splitlines()[-5:])}")
    click.echo(f"lab: up in {where.root}")
    for line in _summary(state):
        click.echo(line)
    click.echo(f"  try            curl -s {state['frontend_url']}/v1/models; export KUBECONFIG={state['kubeconfig']}")
    click.echo(f"lab_up_s: {time.monotonic() - start:.1f}")


@lab.command("down")
@dir_option
def down(directory) -> None:
    """Stop every lab process and remove the lab directory."""
    start = time.monotonic()
    where = LabDir.resolve(directory)
    if supervisor_pid(where) is None and not where.root.exists():
        click.echo("lab: not up")
        return
    killed = stop_lab(where)
    _remove(where)
    extra = f" ({len(killed)} leftover processes killed)" if killed else ""
    click.echo(f"lab: down{extra}, {where.root} removed")
    click.echo(f"lab_down_s: {time.monotonic() - start:.1f}")


@lab.command("status")
@dir_option
@click.option("--json", "as_json", is_flag=True, help="The state record and live objects as JSON.")
def status(directory, as_json) -> None:
    """What runs: supervisor, control plane, nodes, pods, frontend. Exit 1 when the lab is down."""
    where = LabDir.resolve(directory)
    pid = supervisor_pid(where)
    state = read_state(where)
    if pid is None or state is None:
        raise CheckFailed(f"lab is down ({where.root})" if pid is None else f"lab is starting (supervisor pid {pid})")
    from lab.lab_status import live_view

    view = live_view(where, state)
    if as_json:
        click.echo(json.dumps({"state": state, **view}, indent=2))
        return
    click.echo(f"lab: up in {where.root}")
    for line in _summary(state):
        click.echo(line)
    for line in view["lines"]:
        click.echo(line)
