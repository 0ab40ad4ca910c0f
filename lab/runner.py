"""The local runner: walks a scenario declaration the way Argo runs its WorkflowTemplate.

Each stage runs as a subprocess `faultflow step …` with the command line its container would get
(`lab.run_plan`), its own outputs directory under the run's evidence directory, and
`FAULTFLOW_EVENTS_FILE` set, so the report reads exactly what it reads under Argo. Semantics copied
from Argo (and written down in `workflows.declaration`):

* background stages (traffic `load`, the `watch-abort` daemon) start first and get SIGTERM once the
  foreground is over; one with `after` (`watch-reach`) starts at its place in the order, and the run
  goes on once it wrote its `ready` file (Argo: a daemon's dependents start when its readinessProbe
  passes); a background stage that exits 4 (`ExitCode.ABORTED`: a stop condition fired) stops the run
  as its `argo stop` stops the Workflow — the running stage gets SIGTERM, the rest is skipped, the
  exit stages run — and the run's exit code is 4;
* foreground stages run in dependency order; the first failure skips the rest;
* a `retry` stage is retried on exit 3 with exponential backoff (`declaration.RETRY`);
* a stage past its `deadline_s` gets SIGTERM (then SIGKILL after a grace period);
* a `hold` stage waits its duration;
* exit stages (cleanup, then the report) always run, one after the other — also after the runner
  itself got SIGTERM, which it forwards to the running stage so the step reverts its own partial
  change first (the step rule), as the Argo executor forwards it to the container.

A SIGKILLed runner runs nothing more, like an `argo terminate`d workflow: the janitor reverts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential

from lab.run_plan import RunPlan
from steps.errors import ExitCode
from steps.event_names import EVENTS_FILE_ENV
from steps.options import parse_duration
from workflows.declaration import RETRY, Stage

KILL_GRACE_S = 30.0  # Argo's default terminationGracePeriodSeconds
STOPPED = 128 + signal.SIGTERM  # the runner's exit code when it was told to stop
# Event fields not worth a progress line's space (they are in the evidence).
_QUIET_FIELDS = {"time", "ts", "step", "event", "run_id", "scenario"}


def faultflow_command() -> list[str]:
    """The `faultflow` console script of this environment (what a step image's entry point is)."""
    script = Path(sys.executable).with_name("faultflow")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from steps.cli import run; run()"]


@dataclass
class StageResult:
    name: str
    exit_code: int
    seconds: float
    error: str = ""  # the step's one-line error, if it failed

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class RunResult:
    plan: RunPlan
    stages: list[StageResult] = field(default_factory=list)
    stopped: bool = False
    refused: str = ""  # a lock was held: nothing ran
    aborted: str = ""  # the background stage whose stop condition fired

    @property
    def exit_code(self) -> int:
        if self.aborted:
            return ExitCode.ABORTED
        if self.stopped:
            return STOPPED
        if self.refused:
            return ExitCode.CHECK_FAILED
        failed = [r for r in self.stages if not r.ok]
        return failed[0].exit_code if failed else ExitCode.DONE


class Progress:
    """One human line per stage start/end and per step event, timed from the run's start."""

    def __init__(self, out: TextIO):
        self.out, self.start = out, time.monotonic()
        self._lock = threading.Lock()

    def line(self, stage: str, text: str) -> None:
        with self._lock:
            print(f"[{time.monotonic() - self.start:7.1f}s] {stage:<18} {text}", file=self.out, flush=True)

    def event(self, stage: str, raw: str) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict) or "event" not in event:
            return
        fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in _QUIET_FIELDS and not isinstance(v, (dict, list)))
        self.line(stage, f"· {event['event']} {fields}"[:160])


class Runner:
    def __init__(self, plan: RunPlan, progress: Progress, env: dict[str, str] | None = None):
        self.plan, self.progress = plan, progress
        self.base_env = dict(os.environ if env is None else env)
        self.stopping = threading.Event()
        self._current: subprocess.Popen | None = None
        self._in_exit_stages = False
        self._lock = threading.Lock()
        self.aborted = ""

    # --- signals ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """SIGTERM to the runner: stop the running stage (it reverts its own change), skip the rest,
        then run the exit stages. Safe in a signal handler: it only sets an event; `_forward_stop`
        (a thread) does the rest."""
        self.stopping.set()

    def _forward_stop(self) -> None:
        self.stopping.wait()
        with self._lock:
            # The exit stages (cleanup, report) are what a stop is for: they are never interrupted.
            if not self._in_exit_stages and self._current is not None and self._current.poll() is None:
                self._current.send_signal(signal.SIGTERM)

    # --- stages ------------------------------------------------------------------------------------
    def _env(self, stage: Stage) -> dict[str, str]:
        env = dict(self.base_env)
        env[EVENTS_FILE_ENV] = str(self.plan.events_file(stage))
        # A token-less role gets no credentials at all, as its pod gets no service-account token (an
        # empty kubeconfig, so nothing falls back to ~/.kube/config either).
        env["KUBECONFIG"] = str(self.plan.kubeconfig) if stage.role.token and self.plan.kubeconfig else os.devnull
        return env

    def _spawn(self, stage: Stage) -> subprocess.Popen:
        out_dir = self.plan.outputs_dir(stage)
        out_dir.mkdir(parents=True, exist_ok=True)
        argv = [*faultflow_command(), *self.plan.argv(stage)]
        (out_dir / "command.json").write_text(json.dumps(argv) + "\n")
        stderr = open(out_dir / "stderr.log", "ab")
        proc = subprocess.Popen(argv, env=self._env(stage), stdout=subprocess.PIPE, stderr=stderr, text=True)
        stderr.close()
        threading.Thread(target=self._pump, args=(stage, proc), name=f"out-{stage.name}", daemon=True).start()
        return proc

    def _pump(self, stage: Stage, proc: subprocess.Popen) -> None:
        with open(self.plan.outputs_dir(stage) / "stdout.log", "a") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                self.progress.event(stage.name, raw)

    def _wait(self, stage: Stage, proc: subprocess.Popen) -> int:
        try:
            return proc.wait(timeout=stage.deadline_s)
        except subprocess.TimeoutExpired:
            self.progress.line(stage.name, f"deadline of {stage.deadline_s}s passed: SIGTERM")
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def _attempt(self, stage: Stage) -> int:
        with self._lock:
            if self.stopping.is_set() and not self._in_exit_stages:
                return STOPPED
            proc = self._current = self._spawn(stage)
        try:
            return self._wait(stage, proc)
        finally:
            with self._lock:
                self._current = None

    def _last_error(self, stage: Stage) -> str:
        try:
            lines = (self.plan.outputs_dir(stage) / "stderr.log").read_text().strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def run_stage(self, stage: Stage) -> StageResult:
        start = time.monotonic()
        code = self._hold(stage) if stage.hold is not None else self._run_step(stage)
        result = StageResult(stage.name, code, time.monotonic() - start, "" if code == 0 else self._last_error(stage))
        mark = "✓" if result.ok else f"✗ exit {code}"
        self.progress.line(stage.name, f"{mark} ({result.seconds:.1f}s){' ' + result.error if result.error else ''}")
        return result

    def _hold(self, stage: Stage) -> int:
        seconds = parse_duration(self.plan.values[stage.hold.name])
        self.progress.line(stage.name, f"▶ holding the fault for {seconds:g}s")
        return STOPPED if self.stopping.wait(seconds) else 0

    def _run_step(self, stage: Stage) -> int:
        """The stage's step as a subprocess, retried on exit 3 when the stage says so; its exit code."""
        self.progress.line(stage.name, "▶ " + " ".join(stage.command[1:]))

        def before_retry(state: RetryCallState) -> None:
            self.progress.line(stage.name, f"exit 3 (infrastructure): retry {state.attempt_number} of {RETRY.limit}")

        retrying = Retrying(
            stop=stop_after_attempt(1 + (RETRY.limit if stage.retry else 0)),
            wait=wait_exponential(multiplier=RETRY.backoff_s, exp_base=RETRY.factor, max=RETRY.max_backoff_s),
            retry=retry_if_result(lambda code: code == ExitCode.INFRASTRUCTURE and not self.stopping.is_set()),
            retry_error_callback=lambda state: state.outcome.result(),  # out of retries: the last exit code
            before_sleep=before_retry,
            sleep=self.stopping.wait,  # a stop cuts the backoff short
        )
        return retrying(self._attempt, stage)

    def _watch_background(self, stage: Stage, proc: subprocess.Popen) -> None:
        """Argo's side of `watch-abort`: its stop patch stops the Workflow; here its exit code does."""
        if proc.wait() == ExitCode.ABORTED and not self.stopping.is_set():
            self.aborted = stage.name
            self.progress.line(stage.name, "■ a stop condition fired: stopping the run (the exit stages revert)")
            self.request_stop()

    # --- the run -------------------------------------------------------------------------------------
    def _stop_background(self, running: list[tuple[Stage, subprocess.Popen]]) -> None:
        for _stage, proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for stage, proc in running:
            code = self._wait(stage, proc)
            self.progress.line(stage.name, f"■ stopped (exit {code})")

    def _await_ready(self, stage: Stage, background: list[tuple[Stage, subprocess.Popen]]) -> StageResult:
        """Starts a background stage others wait for: ready once its `ready` file exists (polled, as a
        readinessProbe is); failed when its step exits first (retried on exit 3 when the stage says so,
        as Argo retries a daemon that is not yet ready) or its deadline passes."""
        self.progress.line(stage.name, "▶ " + " ".join(stage.command[1:]) + " (until the run ends)")
        start = time.monotonic()
        ready = self.plan.outputs_dir(stage) / str(stage.ready)
        code = 0
        for attempt in range(1 + (RETRY.limit if stage.retry else 0)):
            if attempt:
                backoff = min(RETRY.max_backoff_s, RETRY.backoff_s * RETRY.factor ** (attempt - 1))
                self.progress.line(stage.name, f"exit 3 (infrastructure): retry {attempt} of {RETRY.limit}")
                if self.stopping.wait(backoff):
                    code = STOPPED
                    break
            proc = self._spawn(stage)
            background.append((stage, proc))
            code = self._until_ready(stage, proc, ready, start)
            if code != ExitCode.INFRASTRUCTURE or proc.poll() is None:
                break
        result = StageResult(stage.name, code, time.monotonic() - start, "" if code == 0 else self._last_error(stage))
        self.progress.line(stage.name, "ready" if result.ok else f"✗ not ready (exit {code}) {result.error}")
        return result

    def _until_ready(self, stage: Stage, proc: subprocess.Popen, ready: Path, start: float) -> int:
        """0 once the ready file exists; the step's exit code when it ends first (3 when that was 0:
        it stopped without ever being ready); 3 past the deadline; STOPPED when the runner is stopped."""
        while not ready.exists():
            exited = proc.poll()
            if exited is not None:
                return exited if exited != 0 else ExitCode.INFRASTRUCTURE
            if time.monotonic() - start > stage.deadline_s:
                return ExitCode.INFRASTRUCTURE
            if self.stopping.wait(0.1):
                return STOPPED
        return 0

    def run(self) -> RunResult:
        result = RunResult(self.plan)
        scenario = self.plan.scenario
        threading.Thread(target=self._forward_stop, name="stop-forwarder", daemon=True).start()
        background = []
        for stage in scenario.stages:
            if stage.background and not stage.after:
                self.progress.line(stage.name, "▶ " + " ".join(stage.command[1:]) + " (for the whole run)")
                proc = self._spawn(stage)
                background.append((stage, proc))
                threading.Thread(target=self._watch_background, args=(stage, proc), name=f"bg-{stage.name}", daemon=True).start()
        try:
            for stage in scenario.order():
                if self.stopping.is_set():
                    break
                if stage.background:
                    stage_result = self._await_ready(stage, background)
                    result.stages.append(stage_result)
                    if not stage_result.ok:
                        break
                    continue
                stage_result = self.run_stage(stage)
                result.stages.append(stage_result)
                if not stage_result.ok:
                    break
        finally:
            result.stopped = self.stopping.is_set()
            result.aborted = self.aborted
            self._stop_background(background)
            with self._lock:
                self._in_exit_stages = True
            for stage in scenario.exit_stages:  # Argo's exit handler: always, each whatever the last did
                result.stages.append(self.run_stage(stage))
        return result
