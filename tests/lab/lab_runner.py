"""Running the real `faultflow` CLI against a lab, keeping every step's JSON event lines.

Each step's stdout is appended to `<run dir>/events/<step>.jsonl`, so `faultflow step report --input
<run dir>` can build the run's timeline from them afterwards, as the report step does in a workflow.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.cli import FAULTFLOW


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([FAULTFLOW, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@dataclass
class LabRun:
    """One scenario run by hand against a running lab: the steps, their events, their outputs."""

    lab_dir: Path
    state: dict
    folder: Path

    @property
    def env(self) -> dict:
        return {"KUBECONFIG": self.state["kubeconfig"]}

    def node_path(self, node: str, host_path: str) -> Path:
        return self.lab_dir / "nodes" / node / host_path.lstrip("/")

    def step(self, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = run_cli("step", name, *args, env=self.env, timeout=timeout)
        saved = self.folder / "events" / f"{name}.jsonl"
        saved.parent.mkdir(parents=True, exist_ok=True)
        with open(saved, "a") as out:
            out.write(result.stdout)
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([FAULTFLOW, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **self.env})
