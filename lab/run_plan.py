"""What one local run of a scenario is: its parameter values, its identity, where its evidence goes,
and how a stage's declared arguments become a command line.

The local runner (`lab.runner`) walks a `workflows.declaration.Scenario` exactly as Argo would run the
rendered WorkflowTemplate; this module is the part that turns references into strings, so that what
the runner executes can be read (and tested) without running anything.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from steps.errors import BadInput, InfrastructureError
from workflows.declaration import (
    EVENTS_FILE_NAME,
    EvidenceDir,
    HostPath,
    Output,
    OutputsDir,
    Param,
    Scenario,
    Stage,
    WorkflowField,
)

# Like Argo's generateName suffix: lower-case letters and digits, so the run id is a valid label value.
_SUFFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def run_name(scenario: str) -> str:
    return f"{scenario}-" + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))


def parse_assignments(assignments: tuple[str, ...]) -> dict[str, str]:
    """`-p name=value` pairs (as `argo submit -p`)."""
    values: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadInput(f"-p {item!r}: expected name=value")
        values[name] = value
    return values


def parameter_values(scenario: Scenario, given: dict[str, str]) -> dict[str, str]:
    """Defaults overlaid with the given values; unknown names and values outside an enum are refused
    before anything runs (Argo refuses them at submit time too)."""
    known = {p.name: p for p in scenario.parameters}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise BadInput(f"scenario {scenario.name} has no parameter {', '.join(unknown)} (it has: {', '.join(known)})")
    values = {name: p.default for name, p in known.items()}
    values.update(given)
    for name, value in values.items():
        enum = known[name].enum
        if enum and value not in enum:
            shown = ", ".join(enum) if len(enum) <= 12 else f"{enum[0]} … {enum[-1]}"
            raise BadInput(f"parameter {name}={value!r} is not one of: {shown}")
    return values


@dataclass(frozen=True)
class RunPlan:
    """One run: the scenario, its parameter values and identity, and where things are on this machine.

    `node_root(node)` is the directory standing in for that node's root filesystem (the lab's
    `.lab/nodes/<node>/`); a node-pinned stage sees its host paths there. `None` when the run cannot
    reach node filesystems (then a pinned stage cannot run locally).
    """

    scenario: Scenario
    values: dict[str, str]
    name: str
    evidence: Path
    kubeconfig: Path | None
    namespace: str  # where the run "lives" (the Workflow record, the locks)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    node_root: Callable[[str], Path] | None = None

    def outputs_dir(self, stage: Stage) -> Path:
        return self.evidence / stage.name

    def events_file(self, stage: Stage) -> Path:
        return self.outputs_dir(stage) / EVENTS_FILE_NAME

    def output(self, ref: Output) -> str:
        path = self.evidence / ref.stage / ref.name
        try:
            return path.read_text().strip()
        except OSError:
            raise InfrastructureError(f"stage {ref.stage} did not write its output {ref.name} ({path})") from None

    def node_of(self, stage: Stage) -> str | None:
        return self.output(stage.pinned_to) if stage.pinned_to is not None else None

    def host_path(self, stage: Stage, ref: HostPath) -> str:
        """A pinned stage sees the node's path inside the node's simulated root. Any other stage
        passes the host path on unchanged: it is recorded or handed to a pod spec, and the lab's
        kubelet simulator maps a pod's hostPath volumes itself."""
        node = self.node_of(stage)
        if node is None:
            return ref.host_path
        if self.node_root is None:
            raise BadInput(f"stage {stage.name} runs on node {node}, whose filesystem this runner cannot reach (use --lab)")
        return str(self.node_root(node) / ref.host_path.lstrip("/"))

    def resolve(self, stage: Stage, arg) -> str:
        if isinstance(arg, str):
            return arg
        if isinstance(arg, Param):
            return self.values[arg.name]
        if isinstance(arg, Output):
            return self.output(arg)
        if isinstance(arg, WorkflowField):
            return {"name": self.name, "uid": self.uid, "namespace": self.namespace}[arg.name]
        if isinstance(arg, OutputsDir):
            return str(self.outputs_dir(stage))
        if isinstance(arg, EvidenceDir):
            return str(self.evidence)
        if isinstance(arg, HostPath):
            return self.host_path(stage, arg)
        raise TypeError(f"stage {stage.name}: unknown argument type {type(arg).__name__}")

    def argv(self, stage: Stage) -> list[str]:
        """The stage's command line after `faultflow`, exactly as its container would run it."""
        return [*stage.command[1:], *(self.resolve(stage, a) for a in stage.args)]

    def mutexes(self) -> list[str]:
        """Lock names with `{parameter}` replaced by its value (as the renderer substitutes them)."""
        return [re.sub(r"\{([a-z0-9-]+)\}", lambda m: self.values[m.group(1)], name) for name in self.scenario.mutexes]
