"""One local run from start to end: the Workflow record, the scenario's locks, the stages.

Kept apart from `lab.runner` (which only runs stages) so the order of the things a run owns is in
one place: record first (so the ledger can name it), then the locks (refused → nothing ran, the
record says Failed), then the stages, then the record's final phase and the locks' release.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TextIO

from lab.run_lock import RunLocks
from lab.run_plan import RunPlan
from lab.run_record import FAILED, SUCCEEDED, RunRecord
from lab.runner import Progress, Runner, RunResult
from steps.errors import CheckFailed, ExitCode
from steps.kube.client import connect


class RunSession:
    def __init__(self, plan: RunPlan, out: TextIO):
        self.plan, self.out = plan, out
        self.progress = Progress(out)
        self._runner: Runner | None = None
        self._stop_requested = False

    def request_stop(self) -> None:
        self._stop_requested = True
        if self._runner is not None:
            self._runner.request_stop()

    def run(self) -> RunResult:
        kube = connect(str(self.plan.kubeconfig))
        record = RunRecord.create(kube, self.plan.namespace, self.plan.name, self.plan.scenario.name, self.plan.values)
        plan = replace(self.plan, uid=record.uid) if record else self.plan
        self.plan = plan
        self.progress.line("run", f"{plan.scenario.name} as {plan.name} (evidence: {plan.evidence})")
        result = RunResult(plan)
        try:
            with RunLocks(kube, plan.namespace, plan.mutexes(), plan.name):
                self._runner = Runner(plan, self.progress)
                if self._stop_requested:
                    self._runner.request_stop()
                result = self._runner.run()
        except CheckFailed as refused:  # a lock is held: nothing ran, nothing to clean up
            self.progress.line("run", f"✗ refused: {refused}")
            result.refused = str(refused)
        finally:
            if record is not None:
                record.set_phase(SUCCEEDED if result.exit_code == ExitCode.DONE else FAILED)
        return result
