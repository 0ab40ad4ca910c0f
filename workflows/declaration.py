"""The scenario declaration: plain data, no Hera — the one source of truth for every scenario.

Two consumers walk it and must agree on what a scenario is:
* `workflows.render` turns a `Scenario` into an Argo WorkflowTemplate (Hera);
* the lab's local runner runs each `Stage` as a subprocess `faultflow step <step> <args…>` with a
  per-stage outputs directory, resolving the references below itself.

How to read a scenario (everything a runner needs is here, nothing is implied):
1. `parameters` are the run's inputs (name, default, description, enum).
2. `stages` run as a DAG: a stage starts when every stage named in its `after` has succeeded; a failed
   stage stops the stages after it. A `background` stage (traffic `load`) starts with the run, is
   never waited for, and is stopped with SIGTERM once every other stage has finished (or failed).
   A background stage with `after` (`watch-reach`) starts once those succeeded; it declares `ready`,
   a file its step writes to its outputs directory once it is doing its job, and the stages that
   name it in their `after` start only when that file exists (Argo: a daemon task's dependents start
   when its pod is Ready — a readinessProbe testing for the file — not merely when it runs).
   A `hold` stage runs no command: it keeps the fault in place for a duration.
3. `exit_stages` always run afterwards, one after the other, each whatever the outcome of the
   previous one (cleanup first, then the report): Argo's exit handler; the runner's `finally`.
4. `args` are the step's command-line arguments, in order. Each item is a literal string or a
   reference resolved at run time: `Param` (a run parameter), `Output` (a file an earlier stage wrote
   to its outputs directory), `WorkflowField` (the run's name/uid/namespace), `OutputsDir` (this
   stage's own outputs directory), `EvidenceDir` (the directory holding every stage's outputs
   directory, one sub-directory per stage name), `HostPath` (a path on the stage's node).
5. Every stage runs with the environment variable `FAULTFLOW_EVENTS_FILE` (steps/events.py) set to
   `<its outputs dir>/step-events.jsonl`, so its JSON event lines land in the evidence the report reads.
6. A node-pinned stage (`pinned_to` set) runs on the node the reference names, privileged, with
   only its `host_paths` visible from the host, and without API credentials (`role.token` False).
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENTS_FILE_NAME = "step-events.jsonl"


@dataclass(frozen=True)
class Param:
    """The value of a run parameter (`Scenario.parameters`)."""

    name: str


@dataclass(frozen=True)
class Output:
    """The text of file `name` that stage `stage` wrote to its outputs directory (an earlier stage,
    which must list `name` in its `outputs`)."""

    stage: str
    name: str


@dataclass(frozen=True)
class WorkflowField:
    """A fact about the run itself: `name` (also the run id), `uid`, `namespace` (where it runs)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in ("name", "uid", "namespace"):
            raise ValueError(f"unknown workflow field {self.name!r}")


@dataclass(frozen=True)
class OutputsDir:
    """This stage's own outputs directory (files for later stages and the report)."""


@dataclass(frozen=True)
class EvidenceDir:
    """The directory that holds every stage's outputs directory, one sub-directory per stage name:
    what the report reads (`faultflow step report --input <it>`)."""


@dataclass(frozen=True)
class HostPath:
    """A path on the node a pinned stage runs on. `container_path` is where the step sees it (and what
    the argument resolves to under Argo); a local runner maps `host_path` to the simulated node's
    directory instead. `mount` False: visible without a volume (the driver's /proc entries are not
    namespaced), so Argo mounts nothing for it. In a stage that is not pinned, a HostPath names a
    node path the step records or hands to the workload (preflight, inject-cuda-shim: the toggle
    directory), and a runner maps it the same way."""

    host_path: str
    container_path: str
    host_path_type: str = ""  # Kubernetes hostPath type: CharDevice, Directory, …
    mount: bool = True
    # Mounted (read-only) unless this earlier output has this value: a directory that exists only where
    # some other software made it (NVSentinel's), needed only when that software is in play. A hostPath
    # that is missing keeps the pod from starting (type Directory), and any other type makes the node
    # create it (the kubelet for DirectoryOrCreate; containerd and CRI-O for "", with mkdir -p).
    unless: tuple[Output, str] | None = None


Arg = str | Param | Output | WorkflowField | OutputsDir | EvidenceDir | HostPath


@dataclass(frozen=True)
class RetryPolicy:
    """How a `retry` stage is retried, by Argo (retryStrategy) and by the local runner alike: exit 3
    (infrastructure) only — 1 (a check failed) and 2 (bad input) are verdicts."""

    limit: int = 3  # retries after the first attempt
    backoff_s: int = 10
    factor: int = 2
    max_backoff_s: int = 180


RETRY = RetryPolicy()


@dataclass(frozen=True)
class Toleration:
    """A taint a node-pinned stage's pod tolerates (operator Exists; `effect` None: every effect)."""

    key: str
    effect: str | None = None


# Issue 15 item 9: the privileged node pod tolerates only what it must, never every taint:
# * the cordon (`node.kubernetes.io/unschedulable`: a node NVSentinel cordoned mid-run);
# * NVSentinel's fault-quarantine taints: its rule-sets taint nothing by default; the chart's own
#   example (`nvidia.com/gpu-error`) and its e2e configuration (`AggregatedNodeHealth`) are the keys
#   it is configured with (shared/research/nvsentinel.md §3.2);
# * `nvidia.com/gpu`, the taint GPU nodes carry so that only GPU workloads land there (the GPU
#   workers tolerate it too); without it the stage could not run on a GPU node at all.
NODE_TOLERATIONS = (
    Toleration("node.kubernetes.io/unschedulable", "NoSchedule"),
    Toleration("nvidia.com/gpu-error"),
    Toleration("AggregatedNodeHealth"),
    Toleration("nvidia.com/gpu"),
)


@dataclass(frozen=True)
class Parameter:
    name: str
    default: str
    description: str
    enum: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One RBAC rule: API group, resources, verbs (exactly what the role's steps call)."""

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


@dataclass(frozen=True)
class Role:
    """Who a stage runs as: one ServiceAccount per role, least privilege.

        `namespaced` rules are granted in each target namespace (RoleBinding to a ClusterRole),
        `nvsentinel` rules in NVSentinel's namespace, `cluster` rules cluster-wide (nodes, namespaces, and
        for the janitor, which sweeps every namespace, all of its rules); with `home` the namespaced rules
        are granted in faultflow's own namespace instead (the suite creates Workflows there); `installation`
    rules are granted in faultflow's own namespace besides (the run ledgers, ConfigMap faultflow-config,
    the toggle-off pods). `token` False: the pod gets no
        API credentials at all.
    """

    name: str
    description: str
    namespaced: tuple[Rule, ...] = ()
    cluster: tuple[Rule, ...] = ()
    nvsentinel: tuple[Rule, ...] = ()
    token: bool = True
    home: bool = False  # `namespaced` rules apply in faultflow's own namespace, not the targets
    installation: tuple[Rule, ...] = ()  # rules in faultflow's own namespace (ledgers, config, toggle pods)

    @property
    def service_account(self) -> str:
        return f"faultflow-{self.name}"


@dataclass(frozen=True)
class Stage:
    name: str  # the DAG task name and the stage's sub-directory in the evidence directory
    step: str  # `faultflow step <step>`, or with a space a whole subcommand path ("shim on")
    args: tuple[Arg, ...]
    role: Role
    deadline_s: int  # the stage is killed (SIGTERM) after this; Argo activeDeadlineSeconds
    after: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # files in its outputs dir that later stages read (Output refs)
    retry: bool = False  # touches the API: retried on infrastructure errors (exit 3) with backoff
    background: bool = False
    # A background stage others wait for: the file (in its outputs directory) that says it is ready.
    ready: str | None = None
    pinned_to: Output | None = None  # the node it must run on
    host_paths: tuple[HostPath, ...] = ()
    privileged: bool = False
    description: str = ""
    # A hold stage runs no command: it waits this long (a duration such as "5m"), keeping the fault
    # in place. Argo: a `suspend` template; the runner: a timer.
    hold: Param | None = None

    @property
    def command(self) -> tuple[str, ...]:
        """The argv before `args`: `faultflow step <step>` (or `faultflow shim on`)."""
        words = tuple(self.step.split())
        return ("faultflow", "step", *words) if len(words) == 1 else ("faultflow", *words)

    def references(self) -> list[Arg]:
        refs: list[Arg] = [a for a in self.args if not isinstance(a, str)]
        if self.hold is not None:
            refs.append(self.hold)
        if self.pinned_to is not None:
            refs.append(self.pinned_to)
        refs += [h.unless[0] for h in self.host_paths if h.mount and h.unless is not None]
        return refs


@dataclass(frozen=True)
class Scenario:
    name: str  # WorkflowTemplate name
    title: str
    description: str
    parameters: tuple[Parameter, ...]
    stages: tuple[Stage, ...]
    exit_stages: tuple[Stage, ...]
    mutexes: tuple[str, ...]  # lock names; `{param}` is replaced by that parameter's value
    deadline_s: int  # the whole run
    labels: dict[str, str] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        for stage in (*self.stages, *self.exit_stages):
            if stage.name == name:
                return stage
        raise KeyError(name)

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(name)

    def order(self) -> list[Stage]:
        """Foreground stages, and background stages with `after` (where they are started), in an order
        that respects `after` (stable: declaration order breaks ties)."""
        done: list[str] = []
        # A background stage with `after` has its place in the order: where it is started.
        pending = [s for s in self.stages if not s.background or s.after]
        while pending:
            ready = [s for s in pending if all(a in done for a in s.after)]
            if not ready:
                raise ValueError(f"{self.name}: stages {[s.name for s in pending]} wait on each other or on a missing stage")
            done.append(ready[0].name)
            pending.remove(ready[0])
        return [self.stage(name) for name in done]

    def check(self) -> None:
        """Every reference points at something that exists and runs before it; raises ValueError."""
        names = [s.name for s in (*self.stages, *self.exit_stages)]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate stage names")
        params = {p.name for p in self.parameters}
        self.order()
        for stage in (*self.stages, *self.exit_stages):
            for ref in stage.references():
                if isinstance(ref, Param) and ref.name not in params:
                    raise ValueError(f"{self.name}/{stage.name}: unknown parameter {ref.name}")
                if isinstance(ref, Output):
                    source = self.stage(ref.stage)
                    if ref.name not in source.outputs:
                        raise ValueError(f"{self.name}/{stage.name}: {ref.stage} declares no output {ref.name}")
                    if stage in self.stages and ref.stage not in self.ancestors(stage):
                        raise ValueError(f"{self.name}/{stage.name}: reads {ref.stage} without running after it")
                    if stage in self.exit_stages:
                        raise ValueError(f"{self.name}/{stage.name}: exit stages cannot rely on a stage having run")
            for ref in stage.args:
                if isinstance(ref, HostPath) and ref.mount and stage.pinned_to is not None and ref not in stage.host_paths:
                    raise ValueError(f"{self.name}/{stage.name}: {ref.host_path} is passed but not mounted")
            for name in stage.after:
                waited = self.stage(name)
                if waited.background and waited.ready is None:
                    raise ValueError(f"{self.name}/{stage.name}: waits for background stage {name}, which declares no `ready` file")
            if stage.ready is not None and not stage.background:
                raise ValueError(f"{self.name}/{stage.name}: only a background stage declares `ready`")

    def ancestors(self, stage: Stage) -> set[str]:
        seen: set[str] = set()
        todo = list(stage.after)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.stage(name).after)
        return seen
