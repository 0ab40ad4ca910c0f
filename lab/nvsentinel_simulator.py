"""NVSENTINEL SIMULATOR: syslog-health-monitor, platform-connectors, fault-quarantine and node-drainer
for the lab's GPU nodes, reduced to the contract faultflow depends on (shared/research/nvsentinel.md).

* Detection (§1.2–1.5, nvsentinel-2026-12.md §1–2): each GPU node's kernel-log sink (`dev/kmsg`, a
  FIFO) is read record by record; journald's view of a record written to /dev/kmsg
  (`steps.gpu.kmsg.journald_message`: priority parsing, identifier stripping) gives MESSAGE. The
  journal is polled (`detect_delay_s` stands for the chart's 15 s polling interval); a fresh monitor
  records the journal's end on its first poll, so records written before it are never processed.
* Classification (`classify`) reads the line as NVSentinel's parser does, on its own — never from
  faultflow's expectation: the NVL5 pattern first for 144–150 (decoded against the decode rows
  NVSentinel's sheet holds that we know of, `NVL5_DECODE`; no matching row: NONE), NVSentinel's XID
  regex otherwise; 154's action from the text in the line's last parentheses; the workbook row's
  action for the rest (NVSentinel's embedded workbook is the imported `nvsentinel_xids.json`), XIDs
  it lacks: CONTACT_SUPPORT. The GPU UUID comes from the node's `var/lib/nvsentinel/gpu_metadata.json`
  (else from an earlier `NVRM: GPU at PCI:…: GPU-…` line), and COMPONENT_RESET becomes RESTART_VM when
  it did not come from the metadata file. `isFatal = action != NONE`. The separate GPU-fallen-off check
  fires on `NVRM: The NVIDIA GPU … fallen off the bus and is not responding to commands` unless an XID
  was seen on that PCI within 5 minutes.
* Platform connector (§3.1): an event from a node labelled `nvsentinel.dgxc.nvidia.com/managed=false`
  is stored only. A repeat of the same (node, check, entities, error code) within `dedup_window_s`
  (PR #1283, default 3 min; 0: off) is downgraded to STORE_AND_ANALYSE: stored only. Otherwise a fatal
  event sets node condition `SysLogsXIDError` True (`SysLogsXIDErrorIsNotHealthy`, message entries
  `ErrorCode:<code> PCI:<pci> GPU_UUID:<uuid> MESSAGE=<MESSAGE> Recommended Action=<ACTION>;` — go-systemd's
  GetData("MESSAGE") keeps the `MESSAGE=` prefix); a non-fatal one is a Node Event in namespace `default`.
* Fault-quarantine (§3.2): unless the circuit breaker (ConfigMap `circuit-breaker`, `status`) is
  TRIPPED or the node opted out (`k8saas.nvidia.com/ManagedByNVSentinel=false`): cordon (or annotate
  `quarantineHealthEventCordonPreExisting` when already cordoned), annotations `quarantineHealthEvent`
  (the events as JSON) and `quarantineHealthEventIsCordoned=True`, labels `k8saas.nvidia.com/cordon-by`,
  `-reason`, `-timestamp` and `dgxc.nvidia.com/nvsentinel-state=quarantined`, in one write. Postures:
  `dry-run` and `monitor-only` write the annotation and the state label but never cordon (dry-run's
  drain evicts nothing; monitor-only does not drain). The breaker trips when the cordoned GPU nodes
  reach the lower of `breaker_percentage` of them and `breaker_max_nodes` (PR #1713). The
  configuration is published as ConfigMap `fault-quarantine` (`config.toml`), where preflight reads it.
* Node-drainer (§3.3), configured as a test cluster must be (`userNamespaces` `*` → Immediate): state
  `draining`, every pod on the node outside the system namespaces that is not a DaemonSet pod and not
  finished is evicted through the Eviction API (`gracePeriodSeconds` = `evictionTimeoutInSeconds`),
  then `drain-succeeded` once they are gone (`drain-failed` after `drain_timeout_s`).
* Un-quarantine (§3.5): a GPU-reset acknowledgement in the kernel log (`GPU reset executed: GPU-<uuid>,
  success: true`) is a healthy event for that GPU (its PCI address from the node's driver /proc tree);
  when no quarantined entity is left, the node is uncordoned (unless the cordon pre-existed), the
  markings are removed, `k8saas.nvidia.com/uncordon-by=NVSentinel` is set and the condition goes False.

* Manual uncordon (NVSentinel's documented way to cancel a break-fix): a person uncordons a node
  fault-quarantine cordoned; it notices, removes its quarantine markings and annotates
  `k8saas.nvidia.com/quarantinedNodeUncordonedManually=true`. The node condition stays (platform-connectors
  own it) and so does the dedup tracker: only a healthy event clears its matching entries.
* Metrics (`lab.nvsentinel_metrics`, served on `/metrics` by `serve_metrics()`): the quarantine duration
  (event generation → quarantine written), the pod eviction duration (drain received → pods gone) and
  the dedup counter, with NVSentinel's names, types, labels and buckets.

Fault-remediation and the janitor are not simulated (disabled, as NVIDIA's UAT runs them).
"""

from __future__ import annotations

import json
import os
import re
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lab.gpu_nodes import GPU_METADATA, GPU_PRESENT_LABEL, KMSG
from lab.host_paths import node_path
from lab.informer import start_informer
from lab.layout import LabDir
from lab.nvsentinel_metrics import NvsentinelMetrics
from lab.processes import NotReady, wait_until
from steps.errors import InfrastructureError
from steps.gpu import kmsg
from steps.gpu import nvsentinel as nv
from steps.kube import objects as o
from steps.kube.client import Conflict, Kube, NotFound, Ref

AGENT = "syslog-health-monitor"
RULESET = "Syslog fatal error ruleset"
STRATEGIC = "application/strategic-merge-patch+json"
MANUAL_UNCORDON_ANNOTATION = "k8saas.nvidia.com/quarantinedNodeUncordonedManually"
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class NvsentinelConfig:
    namespace: str = "nvsentinel"
    detect_delay_s: float = 0.2  # the journal poll (chart: 15 s)
    quarantine_delay_s: float = 0.2  # platform connector → datastore → fault-quarantine
    drain_delay_s: float = 0.3  # fault-quarantine → node-drainer
    eviction_grace_s: int = 2  # evictionTimeoutInSeconds (chart: 60)
    drain_timeout_s: float = 60.0
    breaker_percentage: int = 50
    breaker_max_nodes: int = 0  # maxNodes (0: not set)
    breaker_enabled: bool = True
    dedup_window_s: float = nv.DEDUP_WINDOW_S  # platform-connectors' suppressionWindow (0: no dedup)
    posture: str = "enforce"  # enforce | dry-run | monitor-only
    system_namespaces: str = r"^(nvsentinel|kube-system|gpu-operator|gmp-system|network-operator|skyhook)$"

    def __post_init__(self):
        if self.posture not in POSTURES:
            raise ValueError(f"posture {self.posture!r} is not one of {', '.join(POSTURES)}")

    def fault_quarantine_toml(self) -> str:
        """fault-quarantine's config.toml as the chart renders it (the keys preflight reads)."""
        breaker = [f"enabled = {str(self.breaker_enabled).lower()}", f"percentage = {self.breaker_percentage}", 'duration = "5m"']
        if self.breaker_max_nodes:
            breaker.append(f"maxNodes = {self.breaker_max_nodes}")
        return "\n".join(
            [
                'label-prefix = "k8saas.nvidia.com/"',
                f"dryRun = {str(self.posture == 'dry-run').lower()}",
                "",
                "[circuitBreaker]",
                *breaker,
                "",
                "[[rule-sets]]",
                f'name = "{RULESET}"',
                "",
                "[rule-sets.cordon]",
                f"shouldCordon = {str(self.posture == 'enforce').lower()}",
                "",
            ]
        )


POSTURES = ("enforce", "dry-run", "monitor-only")


@dataclass(frozen=True)
class Detection:
    node: str
    xid: int
    pci: str
    uuid: str | None
    message: str
    action: str
    error_code: str = ""
    check: str = nv.XID_CONDITION
    generated_at: float = field(default_factory=time.time)  # the health event's generatedTimestamp

    @property
    def fatal(self) -> bool:
        return self.action != "NONE"

    def health_event(self) -> dict:
        entities = [{"entityType": "PCI", "entityValue": self.pci}]
        if self.uuid:
            entities.append({"entityType": "GPU_UUID", "entityValue": self.uuid})
        return {
            "version": 1,
            "agent": AGENT,
            "componentClass": "GPU",
            "checkName": self.check,
            "isFatal": self.fatal,
            "isHealthy": False,
            "message": self.message,
            "recommendedAction": nv.ACTION_CODES.get(self.action, nv.ACTION_CODES["CONTACT_SUPPORT"]),
            "errorCode": [self.code],
            "entitiesImpacted": entities,
            "nodeName": self.node,
            "processingStrategy": "EXECUTE_REMEDIATION",
        }

    @property
    def code(self) -> str:
        return self.error_code or str(self.xid)

    def dedup_key(self) -> tuple:
        # platform-connectors' key: node, check, entities, error code, strategy, healthy — not message or pid.
        return (self.node, self.check, self.pci, self.uuid, self.code, "EXECUTE_REMEDIATION", False)

    def condition_message(self) -> str:
        uuid = f" GPU_UUID:{self.uuid}" if self.uuid else ""
        # go-systemd's GetData("MESSAGE") returns "MESSAGE=<text>": the prefix travels into the message.
        return f"ErrorCode:{self.code} PCI:{self.pci}{uuid} MESSAGE={self.message} Recommended Action={self.action};"


# --- syslog-health-monitor's parser, re-implemented from its contract (nvsentinel.md §1.3–1.5) -------
# pkg/xid/parser/csv.go: the NVL5 shape, tried first for 144–150.
NVL5_PATTERN = re.compile(
    r"NVRM: Xid \(PCI:([^)]+)\): (\d+)(?:, pid=[^,]*)?(?:, name=[^,]*)?, "
    r"(\w+)\s+(\w+)\s+(\w+)\s+(\w+)\s+Link\s+(-?\d+)\s+\((0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)",
    re.ASCII,
)
# pkg/types GPU-at-PCI line (the driver prints it once per GPU before its first XID) and gpufallen.
GPU_AT_PCI = re.compile(r"NVRM: GPU at PCI:([0-9a-fA-F:.]+): (GPU-[0-9a-fA-F-]+)", re.ASCII)
FALLEN_OFF = re.compile(r"(?s)NVRM: The NVIDIA GPU ([0-9a-fA-F:.]+).*?fallen off the bus and is not responding to commands")
FALLEN_OFF_SUPPRESS_S = 300.0
NVL5_XIDS = range(144, 151)
# Rows of the sheet `Xid 144-150 Decode` we have NVSentinel's own evidence for (its csv_test.go):
# (xid, error code, pattern version, IntrInfo, ErrorStatus) -> action. NVSentinel: no matching row -> NONE.
NVL5_DECODE = {
    (145, "RLW_REMAP", "v1", 0x00000082, 0x00000040): "COMPONENT_RESET",
    (145, "RLW_REMAP", "v2", 0x00000004, 0x00000040): "COMPONENT_RESET",
    (149, "NETIR_LINK_EVT", "v1", 0x025525C6, 0x00000000): "COMPONENT_RESET",
}
# pkg/common MapActionStringToProto's reading of 154's parenthesised text.
RECOVERY_TEXT_ACTIONS = {
    "GPU Reset Required": "COMPONENT_RESET",
    "Drain and Reset": "COMPONENT_RESET",
    "Node Reboot Required": "RESTART_BM",
    "None": "NONE",
}


def workbook() -> dict[int, str]:
    """NVSentinel's embedded workbook, XID → action (the imported rows)."""
    raw = json.loads(resources.files("steps.gpu").joinpath("data/nvsentinel_xids.json").read_text())
    return {int(k): row["workbook_action"] for k, row in raw["xids"].items()}


_WORKBOOK: dict[int, str] = {}


def _metadata_uuids(metadata: dict | None) -> tuple[dict[str, str], str]:
    """metadata reader: PCI normalised (domain's last 4 hex digits, lower case, no function) → UUID."""
    if not isinstance(metadata, dict):
        return {}, ""
    out = {}
    for gpu in metadata.get("gpus") or []:
        address = str(gpu.get("pci_address", "")).lower().split(".")[0].split(":")
        if len(address) == 3:
            out[f"{address[0][-4:]}:{address[1]}:{address[2]}"] = gpu.get("uuid")
    return out, str(metadata.get("driver_version") or "")


def _pattern_version(driver: str) -> str:
    major = driver.split(".")[0]
    return "v2" if major.isdigit() and int(major) >= 575 else "v1"


@dataclass(frozen=True)
class Classified:
    xid: int
    pci: str  # the line's address without its function (the PCI entity keeps the line's case)
    uuid: str | None
    error_code: str
    action: str


def classify(message: str, metadata: dict | None = None, seen_uuids: dict[str, str] | None = None) -> Classified | None:
    """What syslog-health-monitor makes of one journal MESSAGE on a node with this gpu_metadata.json."""
    if not _WORKBOOK:
        _WORKBOOK.update(workbook())
    uuids, driver = _metadata_uuids(metadata)
    nvl5 = NVL5_PATTERN.search(message)
    if nvl5 is not None and int(nvl5.group(2)) in NVL5_XIDS:
        xid, pci = int(nvl5.group(2)), nvl5.group(1)
        key = (xid, nvl5.group(3), _pattern_version(driver), int(nvl5.group(8), 16), int(nvl5.group(9), 16))
        code, action = f"{xid}.{nvl5.group(3)}", NVL5_DECODE.get(key, "NONE")
    else:
        found = nv.match_xid(message)
        if found is None:
            return None
        xid, pci, code = found.xid, found.pci, str(found.xid)
        if xid == 154:
            opened, closed = message.rfind("("), message.rfind(")")
            text = message[opened + 1 : closed].strip() if 0 <= opened < closed else ""
            action = RECOVERY_TEXT_ACTIONS.get(text, "CONTACT_SUPPORT")
        else:
            action = _WORKBOOK.get(xid, "CONTACT_SUPPORT")
    pci = pci.split(".")[0]
    uuid = uuids.get(pci.lower())
    from_metadata = uuid is not None
    if uuid is None:
        uuid = (seen_uuids or {}).get(pci.lower())
    if action == "COMPONENT_RESET" and not from_metadata:
        action = "RESTART_VM"  # "Overriding recommended action from COMPONENT_RESET to RESTART_VM"
    return Classified(xid, pci, uuid, code, action)


@dataclass(frozen=True)
class _Gpu:
    pci: str


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def cordon_reason(ruleset: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", ruleset)[:63]


class NvsentinelSimulator:
    def __init__(
        self,
        kube: Kube,
        lab: LabDir,
        gpu_nodes: list[str],
        config: NvsentinelConfig = NvsentinelConfig(),
        node_paths: Callable[[str], tuple[Path, Path]] | None = None,
        breaker_counts_cluster: bool = False,
    ):
        """`node_paths(node)`: the node's kernel log and its gpu_metadata.json, as this process reaches
        them; by default in the simulated node's directory (a FIFO and a file). A real lab node
        (lab.nodes) gives the file its /dev/kmsg pty is copied to and the file in its own root.
        `breaker_counts_cluster`: the breaker counts every GPU node of the cluster, as fault-quarantine
        does, not only `gpu_nodes` (an instance per node monitors one: `lab.simulators.nvsentinel_node`)."""
        self.kube, self.lab, self.nodes, self.config = kube, lab, list(gpu_nodes), config
        self.breaker_counts_cluster = breaker_counts_cluster
        self.node_paths = node_paths or (lambda node: (node_path(lab.node_root(node), KMSG), node_path(lab.node_root(node), GPU_METADATA)))
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.log: list[str] = []  # what it did, in order (the supervisor prints it)
        self.polled = {node: threading.Event() for node in self.nodes}  # first journal poll done
        self.seen_uuids: dict[str, dict[str, str]] = {node: {} for node in self.nodes}  # from GPU-at-PCI lines
        self.last_xid_at: dict[tuple[str, str], float] = {}  # (node, pci) → monotonic time (gpufallen check)
        self.dedup: dict[tuple, float] = {}  # platform-connectors' dedup key → when last forwarded
        self.lock = threading.Lock()
        self.metrics = NvsentinelMetrics()

    # --- presence: what preflight and an operator see of an installed NVSentinel ------------------
    def install(self, monitor_pods: bool = True) -> None:
        """Its namespace and ConfigMaps; with `monitor_pods`, the monitor DaemonSet and its pods as
        objects only (no kubelet runs them in the simulated lab). On real nodes the pods are real:
        `lab.simulators.nvsentinel` makes that DaemonSet itself."""
        ns = self.config.namespace
        if self.kube.get_or_none(Ref("v1", "namespaces", None, ns)) is None:
            self.kube.create(Ref("v1", "namespaces", None, ""), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            self.kube.create(
                Ref("v1", "serviceaccounts", ns, ""), {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
            )
        if self.kube.get_or_none(Ref("v1", "configmaps", ns, nv.CIRCUIT_BREAKER_CONFIGMAP)) is None:
            self.kube.create(
                Ref("v1", "configmaps", ns, ""),
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": nv.CIRCUIT_BREAKER_CONFIGMAP}, "data": {"status": "CLOSED"}},
            )
        toml = {nv.FAULT_QUARANTINE_KEY: self.config.fault_quarantine_toml()}
        fq = Ref("v1", "configmaps", ns, nv.FAULT_QUARANTINE_CONFIGMAP)
        if self.kube.get_or_none(fq) is None:
            self.kube.create(
                Ref("v1", "configmaps", ns, ""),
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": nv.FAULT_QUARANTINE_CONFIGMAP}, "data": toml},
            )
        else:
            self.kube.merge_patch(fq, {"data": toml})
        if monitor_pods:
            daemonset = self._monitor_daemonset()
            for node in self.nodes:
                self._monitor_pod(node, daemonset)

    def _monitor_daemonset(self) -> dict:
        """The chart's `syslog-health-monitor-regular` DaemonSet (no controller runs it here)."""
        ns, name = self.config.namespace, f"{AGENT}-regular"
        ref = Ref("apps/v1", "daemonsets", ns, name)
        labels = {"app.kubernetes.io/name": AGENT}
        return self.kube.get_or_none(ref) or self.kube.create(
            ref,
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "nodeSelector": {nv.DRIVER_INSTALLED_LABEL: "true"},
                            "containers": [{"name": AGENT, "image": "nvsentinel/syslog-health-monitor"}],
                        },
                    },
                },
            },
        )

    def _monitor_pod(self, node: str, daemonset: dict) -> None:
        """The DaemonSet's pod on `node`, Running (this simulator is it). Owned by the DaemonSet, so
        node-drainer skips it, as it skips every DaemonSet pod."""
        ns, name = self.config.namespace, f"{AGENT}-regular-{node}"[:63]
        ref = Ref("v1", "pods", ns, name)
        owner = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "name": daemonset["metadata"]["name"],
            "uid": daemonset["metadata"]["uid"],
            "controller": True,
        }
        if self.kube.get_or_none(ref) is None:
            self.kube.create(
                Ref("v1", "pods", ns, ""),
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "labels": {"app.kubernetes.io/name": AGENT}, "ownerReferences": [owner]},
                    "spec": {
                        "nodeName": node,
                        "containers": [{"name": AGENT, "image": "nvsentinel/syslog-health-monitor"}],
                        "tolerations": [{"operator": "Exists"}],
                    },
                },
            )
        self.kube.request(
            "PATCH",
            ref.path() + "/status",
            content_type=MERGE,
            body={
                "status": {
                    "phase": "Running",
                    "podIP": "127.0.0.1",
                    "startTime": now(),
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}],
                }
            },
        )

    # --- reading the kernel log -------------------------------------------------------------------
    def start(self) -> NvsentinelSimulator:
        for node in self.nodes:
            # Opened here, read-write, so a writer's open() never blocks and never sees "no reader".
            path = self.node_paths(node)[0]
            if path.is_fifo():
                fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
                target = self._tail
            else:  # a log file: read from its end on, as the journal is read from "now"
                fd = os.open(path, os.O_RDONLY)
                os.lseek(fd, 0, os.SEEK_END)
                target = self._tail_file
            thread = threading.Thread(target=target, args=(node, fd), name=f"nvsentinel-{node}", daemon=True)
            thread.start()
            self.threads.append(thread)
        # fault-quarantine's node informer, for the one change it reacts to from outside: an uncordon.
        self.threads.append(start_informer("nvsentinel-nodes", self.kube, Ref("v1", "nodes", None, ""), self._on_node, self.stop_event))
        return self

    def serve_metrics(self) -> str:
        """`/metrics` on loopback (NVSentinel's metrics port); returns the scrape target `host:port`."""
        return self.metrics.serve()

    def wait_first_poll(self, timeout_s: float = 30.0) -> NvsentinelSimulator:
        """Until every node's monitor has polled once: only records written after that are processed."""
        for node, polled in self.polled.items():
            if not polled.wait(timeout_s):
                raise NotReady(f"NVSentinel simulator: no first journal poll on {node} within {timeout_s:.0f}s")
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(5)
        self.metrics.stop()

    def _on_node(self, kind: str, obj: dict) -> None:
        if kind == "DELETED" or obj["metadata"]["name"] not in self.nodes:
            return
        if o.annotations_of(obj).get(nv.CORDONED_ANNOTATION) == "True" and not o.unschedulable(obj):
            try:
                self.on_manual_uncordon(obj["metadata"]["name"])
            except (InfrastructureError, NotFound) as error:
                self.note(f"{obj['metadata']['name']}: failed to cancel the quarantine: {error}")

    def on_manual_uncordon(self, node: str) -> None:
        """A person uncordoned a node fault-quarantine cordoned: the break-fix is cancelled."""
        labels = {key: None for key in (nv.CORDON_BY_LABEL, nv.CORDON_REASON_LABEL, nv.CORDON_TIMESTAMP_LABEL, nv.STATE_LABEL)}
        annotations = {nv.EVENT_ANNOTATION: None, nv.CORDONED_ANNOTATION: None, nv.PRE_EXISTING_ANNOTATION: None}
        annotations[MANUAL_UNCORDON_ANNOTATION] = "true"
        self.kube.merge_patch(Ref("v1", "nodes", None, node), {"metadata": {"labels": labels, "annotations": annotations}})
        self.note(f"{node}: uncordoned manually: quarantine cancelled (condition and dedup entries kept)")

    def _drain_fd(self, fd: int) -> int:
        skipped = 0
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return skipped
            if not chunk:
                return skipped
            skipped += chunk.count(b"\n")

    def _tail(self, node: str, fd: int) -> None:
        buffer = b""
        try:
            # First poll of a fresh monitor: seek to the journal's end, process nothing before it.
            if self.stop_event.wait(self.config.detect_delay_s):
                return
            skipped = self._drain_fd(fd)
            if skipped:
                self.note(f"{node}: first poll: {skipped} kernel records written before it are not processed")
            self.polled[node].set()
            while not self.stop_event.is_set():
                readable, _, _ = select.select([fd], [], [], 0.2)
                if not readable:
                    continue
                buffer += os.read(fd, 65536)
                while b"\n" in buffer:
                    record, buffer = buffer.split(b"\n", 1)
                    try:
                        self.handle_record(node, record + b"\n")
                    except (InfrastructureError, NotFound, NotReady) as error:
                        self.note(f"{node}: failed to act on a kernel record: {error}")
        finally:
            os.close(fd)

    def _tail_file(self, node: str, fd: int) -> None:
        buffer = b""
        try:
            while not self.stop_event.is_set():
                data = os.read(fd, 65536)
                if not data:
                    # A regular file is always "readable": poll it (stdlib has no inotify), as journald's
                    # readers poll the journal.
                    self.stop_event.wait(0.05)
                    continue
                buffer += data
                while b"\n" in buffer:
                    record, buffer = buffer.split(b"\n", 1)
                    try:
                        self.handle_record(node, record + b"\n")
                    except (InfrastructureError, NotFound, NotReady) as error:
                        self.note(f"{node}: failed to act on a kernel record: {error}")
        finally:
            os.close(fd)

    def note(self, text: str) -> None:
        self.log.append(text)
        print(f"nvsentinel-simulator: {text}", flush=True)

    def gpu_metadata(self, node: str) -> dict | None:
        """The node's /var/lib/nvsentinel/gpu_metadata.json as the metadata reader sees it (None: unusable)."""
        try:
            raw = json.loads(self.node_paths(node)[1].read_text())
        except (OSError, ValueError):
            return None
        return raw if isinstance(raw, dict) else None

    def handle_record(self, node: str, raw: bytes) -> None:
        _ident, message = kmsg.journald_message(raw)
        at_pci = GPU_AT_PCI.search(message)
        if at_pci is not None:
            self.seen_uuids.setdefault(node, {})[at_pci.group(1).split(".")[0].lower()] = at_pci.group(2)
            return
        found = classify(message, self.gpu_metadata(node), self.seen_uuids.get(node))
        if found is not None:
            if self.stop_event.wait(self.config.detect_delay_s):
                return
            with self.lock:
                self.last_xid_at[(node, found.pci.lower())] = time.monotonic()
            self.on_xid(Detection(node, found.xid, found.pci, found.uuid, message, found.action, found.error_code))
            return
        fallen = FALLEN_OFF.search(message)
        if fallen is not None:
            pci = ":".join(fallen.group(1).lower().split(".")[0].split(":")[-3:])
            pci = pci if pci.count(":") == 2 else fallen.group(1).lower()
            with self.lock:
                last = self.last_xid_at.get((node, pci))
            if last is not None and time.monotonic() - last < FALLEN_OFF_SUPPRESS_S:
                self.note(f"{node}: GPU {pci} fallen off the bus: suppressed (XID on that PCI within 5 min)")
                return
            if self.stop_event.wait(self.config.detect_delay_s):
                return
            self.on_xid(Detection(node, 79, pci, None, message, "RESTART_BM", "GPU_FALLEN_OFF_BUS", "SysLogsGPUFallenOff"))
            return
        reset = nv.GPU_RESET_PATTERN.search(message)
        if reset is not None and reset.group(2) == "true":
            if self.stop_event.wait(self.config.detect_delay_s):
                return
            self.on_gpu_reset(node, reset.group(1))

    def _store_only(self, d: Detection) -> str | None:
        """Why platform-connectors store the event without acting on it (None: they act)."""
        labels = self.kube.get(Ref("v1", "nodes", None, d.node))["metadata"].get("labels") or {}
        if labels.get(nv.OPT_OUT_LABEL) == "false":
            return f"{nv.OPT_OUT_LABEL}=false: stored only"
        if self.config.dedup_window_s > 0:
            now_s = time.monotonic()
            with self.lock:
                last = self.dedup.get(d.dedup_key())
                if last is not None and now_s - last < self.config.dedup_window_s:
                    self.metrics.dedup.labels(check=d.check, err_code=d.code).inc()
                    return (
                        f"deduplicated: repeat of ErrorCode:{d.code} PCI:{d.pci} within "
                        f"{self.config.dedup_window_s:.0f}s: STORE_AND_ANALYSE"
                    )
                self.dedup[d.dedup_key()] = now_s
        return None

    # --- after detection --------------------------------------------------------------------------
    def on_xid(self, d: Detection) -> None:
        self.note(f"{d.node}: XID {d.xid} ({d.code}) on PCI {d.pci}: action {d.action} ({'fatal' if d.fatal else 'non-fatal'})")
        why = self._store_only(d)
        if why is not None:
            self.note(f"{d.node}: {why}")
            return
        if not d.fatal:
            self._node_event(d)
            return
        self._set_condition(d.node, True, d.condition_message(), check=d.check)
        if self.stop_event.wait(self.config.quarantine_delay_s):
            return
        if not self.quarantine(d):
            return
        if self.stop_event.wait(self.config.drain_delay_s):
            return
        self.drain(d.node)

    def _node_event(self, d: Detection) -> None:
        stamp = now()
        self.kube.create(
            Ref("v1", "events", "default", ""),
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{d.node}.{time.time_ns():x}", "namespace": "default"},
                "involvedObject": {"kind": "Node", "name": d.node, "apiVersion": "v1"},
                "type": nv.XID_CONDITION,
                "reason": f"{nv.XID_CONDITION}IsNotHealthy",
                "message": d.condition_message(),
                "source": {"component": AGENT, "host": d.node},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
        )

    def _set_condition(self, node: str, unhealthy: bool, message: str, check: str = nv.XID_CONDITION) -> None:
        stamp = now()
        current = next(
            (c for c in self.kube.get(Ref("v1", "nodes", None, node)).get("status", {}).get("conditions") or [] if c.get("type") == check),
            None,
        )
        transition = stamp
        if current is not None and current.get("status") == ("True" if unhealthy else "False"):
            transition = current.get("lastTransitionTime") or stamp
            if unhealthy:  # entries accumulate, each once, within 1024 characters
                entries = [e for e in (current.get("message") or "").split(";") if e]
                if message.rstrip(";") not in entries:
                    entries.append(message.rstrip(";"))
                message = ";".join(entries) + ";"
        condition = {
            "type": check,
            "status": "True" if unhealthy else "False",
            "reason": f"{check}Is{'NotHealthy' if unhealthy else 'Healthy'}",
            "message": message if len(message) <= 1024 else message[:1021] + "...",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": transition,
        }
        self.kube.request("PATCH", f"/api/v1/nodes/{node}/status", content_type=STRATEGIC, body={"status": {"conditions": [condition]}})

    def breaker_tripped(self) -> bool:
        cm = self.kube.get_or_none(Ref("v1", "configmaps", self.config.namespace, nv.CIRCUIT_BREAKER_CONFIGMAP))
        return cm is not None and nv.circuit_breaker_tripped(cm.get("data"))

    def quarantine(self, d: Detection) -> bool:
        if self.config.breaker_enabled and self.breaker_tripped():
            self.note(f"{d.node}: circuit breaker TRIPPED: fault-quarantine halted, node left alone")
            return False
        ref = Ref("v1", "nodes", None, d.node)
        node = self.kube.get(ref)
        labels, annotations = o.labels(node), o.annotations_of(node)
        if labels.get(nv.MANAGED_LABEL) == "false":
            self.note(f"{d.node}: {nv.MANAGED_LABEL}=false: not quarantined")
            return False
        events = json.loads(annotations.get(nv.EVENT_ANNOTATION) or "[]")
        already = annotations.get(nv.CORDONED_ANNOTATION) == "True"
        events.append(d.health_event())
        new_annotations = {nv.EVENT_ANNOTATION: json.dumps(events), nv.CORDONED_ANNOTATION: "True"}
        spec = {}
        cordon = self.config.posture == "enforce"
        if not cordon:  # dry-run / monitor-only: FQ records its finding, never cordons
            new_annotations.pop(nv.CORDONED_ANNOTATION)
            already = nv.EVENT_ANNOTATION in annotations
        elif not already:
            if o.unschedulable(node):
                new_annotations[nv.PRE_EXISTING_ANNOTATION] = "True"
            else:
                spec = {"unschedulable": True}
        patch = {"metadata": {"annotations": new_annotations}}
        if not already:
            patch["metadata"]["labels"] = {
                nv.CORDON_BY_LABEL: "NVSentinel",
                nv.CORDON_REASON_LABEL: cordon_reason(RULESET),
                nv.CORDON_TIMESTAMP_LABEL: time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime()),
                nv.STATE_LABEL: "quarantined",
            }
        if spec:
            patch["spec"] = spec
        self.kube.merge_patch(ref, patch)
        if not already:
            self.metrics.quarantine_duration.observe(max(0.0, time.time() - d.generated_at))
        self.note(
            f"{d.node}: quarantined ({'already quarantined' if already else 'cordoned' if cordon else self.config.posture + ', not cordoned'})"
        )
        if cordon:
            self._evaluate_breaker()
        return not already and self.config.posture != "monitor-only"

    def breaker_threshold(self, gpu_nodes: int) -> float:
        """The lower of `percentage` of the GPU nodes and `maxNodes` (PR #1713)."""
        bound = gpu_nodes * self.config.breaker_percentage / 100
        return min(bound, self.config.breaker_max_nodes) if self.config.breaker_max_nodes else bound

    def _evaluate_breaker(self) -> None:
        if not self.config.breaker_enabled:
            return
        # FQ counts the cluster's GPU nodes (`--gpu-node-label`); in the lab those are the monitored ones.
        nodes = [
            n
            for n in self.kube.list(Ref("v1", "nodes", None, ""), label_selector=f"{GPU_PRESENT_LABEL}=true").get("items") or []
            if self.breaker_counts_cluster or n["metadata"]["name"] in self.nodes
        ]
        cordoned = sum(1 for n in nodes if o.unschedulable(n))
        if nodes and cordoned >= self.breaker_threshold(len(nodes)):
            self.kube.merge_patch(
                Ref("v1", "configmaps", self.config.namespace, nv.CIRCUIT_BREAKER_CONFIGMAP),
                {"data": {"status": nv.CIRCUIT_BREAKER_TRIPPED}},
            )
            self.note(
                f"circuit breaker TRIPPED: {cordoned} of {len(nodes)} GPU nodes cordoned (threshold {self.breaker_threshold(len(nodes)):g})"
            )

    def _state(self, node: str, state: str) -> bool:
        """Move the node's state label on, unless a manual uncordon cancelled the quarantine meanwhile
        (its markings are gone): then the break-fix stops here. False when cancelled."""
        ref = Ref("v1", "nodes", None, node)
        while True:
            meta = self.kube.get(ref)["metadata"]
            if nv.EVENT_ANNOTATION not in (meta.get("annotations") or {}):
                self.note(f"{node}: quarantine cancelled: {state} not set")
                return False
            try:  # guarded by the resourceVersion read: a cancellation in between is never overwritten
                self.kube.merge_patch(ref, {"metadata": {"resourceVersion": meta["resourceVersion"], "labels": {nv.STATE_LABEL: state}}})
            except Conflict:
                continue
            self.note(f"{node}: {nv.STATE_LABEL}={state}")
            return True

    def _drainable(self, node: str) -> list[dict]:
        system = re.compile(self.config.system_namespaces)
        pods = self.kube.list(Ref("v1", "pods", None, ""), field_selector=f"spec.nodeName={node}").get("items") or []
        out = []
        for pod in pods:
            meta = pod["metadata"]
            if system.search(meta["namespace"]) or o.finished(pod):
                continue
            if any(owner.get("kind") == "DaemonSet" for owner in meta.get("ownerReferences") or []):
                continue
            out.append(pod)
        return out

    def drain(self, node: str) -> None:
        received = time.time()
        if not self._state(node, "draining"):
            return
        if self.config.posture == "dry-run":  # node-drainer's evictions are DryRun: nothing leaves
            self.note(f"{node}: dry-run drain of {len(self._drainable(node))} pods")
            self._state(node, "drain-succeeded")
            return
        for pod in self._drainable(node):
            if o.terminating(pod):
                continue
            if self.stop_event.is_set() or nv.EVENT_ANNOTATION not in o.annotations_of(self.kube.get(Ref("v1", "nodes", None, node))):
                self.note(f"{node}: quarantine cancelled: drain stopped")
                return
            meta = pod["metadata"]
            try:
                self.kube.request(
                    "POST",
                    Ref("v1", "pods", meta["namespace"], meta["name"]).path() + "/eviction",
                    body={
                        "apiVersion": "policy/v1",
                        "kind": "Eviction",
                        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                        "deleteOptions": {"gracePeriodSeconds": self.config.eviction_grace_s},
                    },
                )
                self.note(f"{node}: evicted {meta['namespace']}/{meta['name']}")
            except NotFound:
                pass
        try:
            wait_until(
                lambda: True if not self._drainable(node) else None,
                what=f"pods gone from {node}",
                timeout_s=self.config.drain_timeout_s,
                interval_s=0.1,
            )
        except NotReady:
            self._state(node, "drain-failed")
            return
        if self._state(node, "drain-succeeded"):
            self.metrics.eviction_duration.observe(time.time() - received)

    def on_gpu_reset(self, node: str, uuid: str) -> None:
        """A healthy event for the GPU: clears its entities; the last one un-quarantines the node."""
        # SHM looks the UUID up in gpu_metadata.json for its PCI address.
        uuids, _ = _metadata_uuids(self.gpu_metadata(node))
        pci = next((p for p, u in uuids.items() if (u or "").lower() == uuid.lower()), None)
        if pci is None:
            self.note(f"{node}: GPU reset of {uuid}, not in gpu_metadata.json: ignored")
            return
        gpu = _Gpu(pci)
        ref = Ref("v1", "nodes", None, node)
        meta = self.kube.get(ref)["metadata"]
        annotations = meta.get("annotations") or {}
        events = json.loads(annotations.get(nv.EVENT_ANNOTATION) or "[]")
        left = [
            e
            for e in events
            if not any(
                x.get("entityType") == "PCI" and x.get("entityValue", "").lower() == gpu.pci for x in e.get("entitiesImpacted") or []
            )
        ]
        self.note(f"{node}: GPU reset of {uuid} (PCI {gpu.pci}) succeeded: healthy event")
        with self.lock:  # a healthy event clears the matching unhealthy entries from the dedup tracker
            for key in [k for k in self.dedup if k[0] == node and str(k[2]).lower() == gpu.pci]:
                del self.dedup[key]
        if left:
            self.kube.merge_patch(ref, {"metadata": {"annotations": {nv.EVENT_ANNOTATION: json.dumps(left)}}})
            return
        cordoned = annotations.get(nv.CORDONED_ANNOTATION) == "True"
        if cordoned or nv.EVENT_ANNOTATION in annotations:  # dry-run / monitor-only: annotated, never cordoned
            patch = {
                "metadata": {
                    "annotations": {nv.EVENT_ANNOTATION: None, nv.CORDONED_ANNOTATION: None, nv.PRE_EXISTING_ANNOTATION: None},
                    "labels": {
                        nv.CORDON_BY_LABEL: None,
                        nv.CORDON_REASON_LABEL: None,
                        nv.CORDON_TIMESTAMP_LABEL: None,
                        nv.STATE_LABEL: None,
                        nv.UNCORDON_BY_LABEL: "NVSentinel",
                        nv.UNCORDON_TIMESTAMP_LABEL: time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime()),
                    },
                }
            }
            if cordoned and annotations.get(nv.PRE_EXISTING_ANNOTATION) != "True":
                patch["spec"] = {"unschedulable": None}
            self.kube.merge_patch(ref, patch)
            self.note(f"{node}: un-quarantined")
        self._set_condition(node, False, "No Health Failures")
