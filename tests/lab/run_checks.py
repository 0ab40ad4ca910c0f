"""What the runner tests share: a lab, a `faultflow run` read line by line, the lab's state as faultflow
may change it, and the lab's way back to its baseline.

"The pre-run state" compared after a run is what faultflow owns: the DGD's spec, each node's
`spec.unschedulable` and `faultflow.dev/*` labels and annotations, each node's toggle (off or absent),
the NetworkPolicies / NetworkChaos labelled `faultflow.dev/run`, the run's ledger entries and Lease
locks. NVSentinel's markings (its labels, annotations, condition and its cordon) are NVSentinel's: a
node NVSentinel quarantined during the run must still be cordoned afterwards (faultflow must not
uncordon what it did not cordon); it goes back to schedulable only through NVSentinel, on the GPU reset
line the lab writes to its kernel log (`release_quarantined`), and only then is its `unschedulable`
compared with the pre-run value.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

from lab.processes import wait_until
from lab.run_lock import holder
from lab.run_record import FINISHED, workflow_ref
from steps.gpu import nvsentinel, toggle
from steps.gpu.kmsg import write_record
from steps.gpu.pci import list_gpus
from steps.kube.client import Kube, NotFound, Ref, connect
from steps.run import ledger as L
from steps.workload.rollout import rolled_out
from tests.cli import FAULTFLOW, run_cli

# Fast NVSentinel so a whole matrix of runs stays affordable (the chart's delays are 15 s and more).
# The matrices re-inject XID 79 on the same GPUs within minutes, which NVSentinel's dedup would (rightly)
# suppress: this lab's NVSentinel runs without dedup, and `faultflow run --lab` passes its window (0) on.
LAB_NVSENTINEL = json.dumps({"detect_delay_s": 1, "quarantine_delay_s": 0.5, "drain_delay_s": 0.5, "dedup_window_s": 0})
TOGGLE = "var/lib/faultflow/toggle"
FAULTFLOW_PREFIX = "faultflow.dev/"
# A progress line of the runner: `[   5.6s] inject-xid         ▶ step inject-xid`.
PROGRESS = re.compile(r"^\[\s*[\d.]+s\] (\S+)\s+(.*)$")
RUN_NAME = re.compile(r"^\[\s*[\d.]+s\] run\s+\S+ as (\S+) ")


@dataclass(frozen=True)
class Lab:
    root: Path
    state: dict

    @property
    def kubeconfig(self) -> str:
        return self.state["kubeconfig"]

    @property
    def namespace(self) -> str:
        return self.state["namespace"]

    def kube(self) -> Kube:
        return connect(self.kubeconfig)

    def dgd_ref(self) -> Ref:
        return Ref(f"nvidia.com/{self.state['dgd_version']}", "dynamographdeployments", self.namespace, self.state["dgd"])

    def gpu_nodes(self) -> list[str]:
        return [n["name"] for n in self.state["nodes"] if n["gpus"]]

    def node_file(self, node: str, path: str) -> Path:
        return self.root / "nodes" / node / path.lstrip("/")


def lab_up(root: Path) -> Lab:
    up = run_cli("lab", "up", "--dir", str(root), "--workers", "1", "--nvsentinel", LAB_NVSENTINEL)
    assert up.returncode == 0, up.stdout + up.stderr
    return Lab(root, json.loads((root / "state.json").read_text()))


def lab_down(lab: Lab) -> None:
    down = run_cli("lab", "down", "--dir", str(lab.root))
    assert down.returncode == 0, down.stderr


# --- a run, read as it goes ---------------------------------------------------------------------


@dataclass
class Run:
    """`faultflow run SCENARIO --lab` in its own process group, its stdout read line by line."""

    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    name: str = ""
    stderr: str = ""

    @classmethod
    def start(cls, lab: Lab, *parameters: str, scenario: str = "gpu-fault") -> Run:
        argv = [FAULTFLOW, "run", scenario, "--lab", str(lab.root), *(a for p in parameters for a in ("-p", p))]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "KUBECONFIG": lab.kubeconfig},
            start_new_session=True,
        )
        return cls(proc)

    def read_until(self, pattern: re.Pattern) -> re.Match:
        """Reads progress lines until one matches; fails if the run ends first. The runner's own
        deadlines bound the wait (every lab stage has one)."""
        for line in self.proc.stdout:
            self.lines.append(line)
            if not self.name and (named := RUN_NAME.match(line)):
                self.name = named.group(1)
            if match := pattern.search(line):
                return match
        raise AssertionError(f"the run ended (exit {self.proc.wait()}) before {pattern.pattern!r}:\n{self.output()}")

    def wait_stage_started(self, stage: str) -> None:
        self.read_until(re.compile(rf"^\[\s*[\d.]+s\] {re.escape(stage)}\s+▶ "))

    def finish(self, timeout: float = 300) -> int:
        rest, err = self.proc.communicate(timeout=timeout)
        self.lines.extend(rest.splitlines(keepends=True))
        self.stderr = err
        for line in self.lines:
            if not self.name and (named := RUN_NAME.match(line)):
                self.name = named.group(1)
        return self.proc.returncode

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def kill_group(self) -> None:
        """SIGKILL to the runner and every stage it started (they share its process group)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.finish()

    def output(self) -> str:
        return "".join(self.lines)

    def stage_lines(self, stage: str) -> list[str]:
        return [m.group(2) for m in map(PROGRESS.match, self.lines) if m and m.group(1) == stage]

    def stage_finished(self, stage: str) -> bool:
        """The runner printed the stage's end (✓ or ✗ exit N)."""
        return any(text.startswith(("✓", "✗ exit")) for text in self.stage_lines(stage))


# --- the state faultflow may change -------------------------------------------------------------


def _own_markings(obj: dict) -> dict:
    meta = obj.get("metadata") or {}
    return {kind: {k: v for k, v in (meta.get(kind) or {}).items() if k.startswith(FAULTFLOW_PREFIX)} for kind in ("labels", "annotations")}


def toggle_on(lab: Lab, node: str) -> bool:
    path = lab.node_file(node, TOGGLE)
    return path.exists() and toggle.read(str(path)).on


def _list_or_empty(kube: Kube, ref: Ref, selector: str) -> list[dict]:
    try:
        return kube.list(ref, label_selector=selector).get("items") or []
    except NotFound:  # the type is not installed: nothing of it can be left
        return []


def network_objects(kube: Kube) -> list[str]:
    out = []
    for ref in (Ref("networking.k8s.io/v1", "networkpolicies", None, ""), Ref("chaos-mesh.org/v1alpha1", "networkchaos", None, "")):
        out += [f"{ref.plural}/{o['metadata']['namespace']}/{o['metadata']['name']}" for o in _list_or_empty(kube, ref, L.RUN_LABEL)]
    return sorted(out)


@dataclass(frozen=True)
class Snapshot:
    dgd_spec: str
    node_schedulable: dict[str, bool]
    node_markings: dict[str, dict]
    toggles_on: tuple[str, ...]
    network: tuple[str, ...]


def snapshot(lab: Lab) -> Snapshot:
    kube = lab.kube()
    nodes = {n: kube.get(Ref("v1", "nodes", None, n)) for n in lab.gpu_nodes()}
    return Snapshot(
        dgd_spec=json.dumps(kube.get(lab.dgd_ref())["spec"], sort_keys=True),
        node_schedulable={n: not (o.get("spec") or {}).get("unschedulable") for n, o in nodes.items()},
        node_markings={n: _own_markings(o) for n, o in nodes.items()},
        toggles_on=tuple(n for n in nodes if toggle_on(lab, n)),
        network=tuple(network_objects(kube)),
    )


def active_locks(kube: Kube, namespace: str) -> list[str]:
    """Lease locks still held by a run that is live: not expired, and its Workflow record Running."""
    from datetime import datetime

    held = []
    now = datetime.now(UTC)
    for lease in (
        kube.list(Ref("coordination.k8s.io/v1", "leases", namespace, ""), label_selector="faultflow.dev/lock=true").get("items") or []
    ):
        current = holder(lease, now)
        if current.stale:
            continue
        record = kube.get_or_none(workflow_ref(namespace, current.identity))
        if record is not None and (record.get("status") or {}).get("phase") not in FINISHED:
            held.append(f"lease {lease['metadata']['name']} held by {current.identity}")
    return held


def active_ledger_entries(kube: Kube, namespace: str) -> list[str]:
    return [
        f"ledger {ledger.run.run_id}: {entry.id} ({entry.kind}, {entry.state})"
        for ledger in L.LedgerStore(kube).all(namespace)
        for entry in ledger.active()
    ]


def leftovers(lab: Lab, before: Snapshot) -> list[str]:
    """Everything faultflow changed that is not back to `before`. A node NVSentinel quarantined is
    compared on faultflow's markings only, and must still be cordoned (see the module's docstring)."""
    kube = lab.kube()
    after = snapshot(lab)
    found = []
    if after.dgd_spec != before.dgd_spec:
        found.append(f"DGD spec differs: {after.dgd_spec} != {before.dgd_spec}")
    for node in lab.gpu_nodes():
        obj = kube.get(Ref("v1", "nodes", None, node))
        if after.node_markings[node] != before.node_markings[node]:
            found.append(f"node {node} faultflow markings {after.node_markings[node]} != {before.node_markings[node]}")
        if nvsentinel.is_quarantined(obj):
            continue  # NVSentinel's cordon, still in place (is_quarantined requires unschedulable)
        if after.node_schedulable[node] != before.node_schedulable[node]:
            found.append(f"node {node} schedulable={after.node_schedulable[node]}, before {before.node_schedulable[node]}")
    found += [f"toggle on at node {n}" for n in after.toggles_on if n not in before.toggles_on]
    found += [f"network object {o}" for o in after.network if o not in before.network]
    found += active_ledger_entries(kube, lab.namespace)
    found += active_locks(kube, lab.namespace)
    return found


# --- back to the baseline -------------------------------------------------------------------------


def release_quarantined(lab: Lab) -> list[str]:
    """For each node NVSentinel quarantined: the GPU-reset acknowledgement on its kernel log, for each
    GPU (as NVSentinel's GPU reset ends); the simulator then un-quarantines it. Returns those nodes."""
    kube = lab.kube()
    released = []
    for node in lab.gpu_nodes():
        if not nvsentinel.is_quarantined(kube.get(Ref("v1", "nodes", None, node))):
            continue
        for gpu in list_gpus(str(lab.node_file(node, "/proc"))):
            write_record(str(lab.node_file(node, "/dev/kmsg")), f"<6>kernel: GPU reset executed: {gpu.uuid}, success: true\n".encode())
        wait_until(
            lambda node=node: True if not nvsentinel.is_quarantined(kube.get(Ref("v1", "nodes", None, node))) else None,
            what=f"NVSentinel releasing {node} after the GPU reset",
            timeout_s=30,
        )
        released.append(node)
    return released


def wait_baseline(lab: Lab, timeout_s: float = 120) -> None:
    """Every GPU node schedulable and unmarked by NVSentinel, the breaker closed, the DGD rolled out
    (every component updated and ready), no toggle on."""
    kube = lab.kube()
    breaker = Ref("v1", "configmaps", lab.state["nvsentinel_namespace"], nvsentinel.CIRCUIT_BREAKER_CONFIGMAP)

    def settled():
        for node in lab.gpu_nodes():
            obj = kube.get(Ref("v1", "nodes", None, node))
            if (obj.get("spec") or {}).get("unschedulable") or nvsentinel.STATE_LABEL in (obj["metadata"].get("labels") or {}):
                return None
            if toggle_on(lab, node):
                return None
        if nvsentinel.circuit_breaker_tripped(kube.get(breaker).get("data")):
            return None
        dgd = kube.get(lab.dgd_ref())
        status = dgd.get("status") or {}
        components = list(status.get("components") or status.get("services") or {})
        return True if components and rolled_out(dgd, components) else None

    wait_until(settled, what="the lab back at its baseline", timeout_s=timeout_s, interval_s=0.2)
