"""NVSENTINEL SIMULATOR: syslog-health-monitor, platform-connectors, fault-quarantine and node-drainer
for the lab's GPU nodes, reduced to the contract faultflow depends on (shared/research/nvsentinel.md).

* Detection (§1.2–1.5): each GPU node's kernel-log sink (`dev/kmsg`, a FIFO) is read record by record;
  journald's view of a record written to /dev/kmsg (`steps.gpu.kmsg.journald_message`: priority parsing,
  identifier stripping) gives MESSAGE, which NVSentinel's own regex (`steps.gpu.nvsentinel.match_xid`)
  matches; the XID catalogue gives NVSentinel's recommended action, and `isFatal = action != NONE`
  (codes outside the catalogue: CONTACT_SUPPORT, fatal). The journal is polled (`detect_delay_s`
  stands for the chart's 15 s polling interval).
* Platform connector (§3.1): a fatal event sets node condition `SysLogsXIDError` True
  (`SysLogsXIDErrorIsNotHealthy`, message `ErrorCode:<xid> PCI:<pci> GPU_UUID:<uuid> <MESSAGE>
  Recommended Action=<ACTION>;`); a non-fatal one is a Node Event in namespace `default`.
* Fault-quarantine (§3.2): unless the circuit breaker (ConfigMap `circuit-breaker`, `status`) is
  TRIPPED or the node opted out (`k8saas.nvidia.com/ManagedByNVSentinel=false`): cordon (or annotate
  `quarantineHealthEventCordonPreExisting` when already cordoned), annotations `quarantineHealthEvent`
  (the events as JSON) and `quarantineHealthEventIsCordoned=True`, labels `k8saas.nvidia.com/cordon-by`,
  `-reason`, `-timestamp` and `dgxc.nvidia.com/nvsentinel-state=quarantined`, in one write. The breaker
  trips when at least `breaker_percentage` of the GPU nodes are cordoned.
* Node-drainer (§3.3), configured as a test cluster must be (`userNamespaces` `*` → Immediate): state
  `draining`, every pod on the node outside the system namespaces that is not a DaemonSet pod and not
  finished is evicted through the Eviction API (`gracePeriodSeconds` = `evictionTimeoutInSeconds`),
  then `drain-succeeded` once they are gone (`drain-failed` after `drain_timeout_s`).
* Un-quarantine (§3.5): a GPU-reset acknowledgement in the kernel log (`GPU reset executed: GPU-<uuid>,
  success: true`) is a healthy event for that GPU (its PCI address from the node's driver /proc tree);
  when no quarantined entity is left, the node is uncordoned (unless the cordon pre-existed), the
  markings are removed, `k8saas.nvidia.com/uncordon-by=NVSentinel` is set and the condition goes False.

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
from dataclasses import dataclass
from pathlib import Path

from lab.gpu_nodes import GPU_PRESENT_LABEL, KMSG, PROC
from lab.host_paths import node_path
from lab.kubelet_simulator import now
from lab.layout import LabDir
from lab.processes import NotReady, wait_until
from steps.gpu import kmsg, nvsentinel as nv
from steps.errors import InfrastructureError
from steps.gpu.pci import list_gpus
from steps.kube import objects as o
from steps.kube.client import Kube, NotFound, Ref
from steps.gpu.xids import lookup

AGENT = "syslog-health-monitor"
RULESET = "Syslog fatal error ruleset"
STRATEGIC = "application/strategic-merge-patch+json"
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
    system_namespaces: str = r"^(nvsentinel|kube-system|gpu-operator|gmp-system|network-operator|skyhook)$"


@dataclass(frozen=True)
class Detection:
    node: str
    xid: int
    pci: str
    uuid: str | None
    message: str
    action: str

    @property
    def fatal(self) -> bool:
        return self.action != "NONE"

    def health_event(self) -> dict:
        entities = [{"entityType": "PCI", "entityValue": self.pci}]
        if self.uuid:
            entities.append({"entityType": "GPU_UUID", "entityValue": self.uuid})
        return {"version": 1, "agent": AGENT, "componentClass": "GPU", "checkName": nv.XID_CONDITION,
                "isFatal": self.fatal, "isHealthy": False, "message": self.message,
                "recommendedAction": nv.ACTION_CODES.get(self.action, nv.ACTION_CODES["CONTACT_SUPPORT"]),
                "errorCode": [str(self.xid)], "entitiesImpacted": entities, "nodeName": self.node,
                "processingStrategy": "EXECUTE_REMEDIATION"}

    def condition_message(self) -> str:
        uuid = f" GPU_UUID:{self.uuid}" if self.uuid else ""
        return f"ErrorCode:{self.xid} PCI:{self.pci}{uuid} {self.message} Recommended Action={self.action};"[:1024]


def recommended_action(xid: int) -> str:
    try:
        return lookup(xid).nvsentinel_action
    except KeyError:
        return "CONTACT_SUPPORT"  # codes NVSentinel's catalogue lacks


def cordon_reason(ruleset: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", ruleset)[:63]


class NvsentinelSimulator:
    def __init__(self, kube: Kube, lab: LabDir, gpu_nodes: list[str], config: NvsentinelConfig = NvsentinelConfig(),
                 node_paths: Callable[[str], tuple[Path, Path]] | None = None):
        """`node_paths(node)`: the node's kernel log and its /proc, as this process reaches them; by
        default the simulated node's directory (a FIFO and a /proc tree). A real lab node
        (lab.nodes) gives the file its /dev/kmsg pty is copied to and its own /proc."""
        self.kube, self.lab, self.nodes, self.config = kube, lab, list(gpu_nodes), config
        self.node_paths = node_paths or (lambda node: (node_path(lab.node_root(node), KMSG),
                                                       node_path(lab.node_root(node), PROC)))
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.log: list[str] = []  # what it did, in order (the supervisor prints it)

    # --- presence: what preflight and an operator see of an installed NVSentinel ------------------
    def install(self) -> None:
        ns = self.config.namespace
        if self.kube.get_or_none(Ref("v1", "namespaces", None, ns)) is None:
            self.kube.create(Ref("v1", "namespaces", None, ""), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            self.kube.create(Ref("v1", "serviceaccounts", ns, ""), {"apiVersion": "v1", "kind": "ServiceAccount",
                                                                    "metadata": {"name": "default"}})
        if self.kube.get_or_none(Ref("v1", "configmaps", ns, nv.CIRCUIT_BREAKER_CONFIGMAP)) is None:
            self.kube.create(Ref("v1", "configmaps", ns, ""), {"apiVersion": "v1", "kind": "ConfigMap",
                                                               "metadata": {"name": nv.CIRCUIT_BREAKER_CONFIGMAP},
                                                               "data": {"status": "CLOSED"}})
        daemonset = self._monitor_daemonset()
        for node in self.nodes:
            self._monitor_pod(node, daemonset)

    def _monitor_daemonset(self) -> dict:
        """The chart's `syslog-health-monitor-regular` DaemonSet (no controller runs it here)."""
        ns, name = self.config.namespace, f"{AGENT}-regular"
        ref = Ref("apps/v1", "daemonsets", ns, name)
        labels = {"app.kubernetes.io/name": AGENT}
        return self.kube.get_or_none(ref) or self.kube.create(ref, {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "labels": labels},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
                "nodeSelector": {nv.DRIVER_INSTALLED_LABEL: "true"},
                "containers": [{"name": AGENT, "image": "nvsentinel/syslog-health-monitor"}]}}}})

    def _monitor_pod(self, node: str, daemonset: dict) -> None:
        """The DaemonSet's pod on `node`, Running (this simulator is it). Owned by the DaemonSet, so
        node-drainer skips it, as it skips every DaemonSet pod."""
        ns, name = self.config.namespace, f"{AGENT}-regular-{node}"[:63]
        ref = Ref("v1", "pods", ns, name)
        owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": daemonset["metadata"]["name"],
                 "uid": daemonset["metadata"]["uid"], "controller": True}
        if self.kube.get_or_none(ref) is None:
            self.kube.create(Ref("v1", "pods", ns, ""), {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/name": AGENT}, "ownerReferences": [owner]},
                "spec": {"nodeName": node, "containers": [{"name": AGENT, "image": "nvsentinel/syslog-health-monitor"}],
                         "tolerations": [{"operator": "Exists"}]},
            })
        self.kube.request("PATCH", ref.path() + "/status", content_type=MERGE, body={"status": {
            "phase": "Running", "podIP": "127.0.0.1", "startTime": now(),
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}]}})

    # --- reading the kernel log -------------------------------------------------------------------
    def start(self) -> "NvsentinelSimulator":
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
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(5)

    def _tail(self, node: str, fd: int) -> None:
        buffer = b""
        try:
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

    def handle_record(self, node: str, raw: bytes) -> None:
        _ident, message = kmsg.journald_message(raw)
        found = nv.match_xid(message)
        if found is not None:
            if self.stop_event.wait(self.config.detect_delay_s):
                return
            gpu = self._gpu_by_pci(node, found.pci)
            detection = Detection(node, found.xid, found.pci.lower(), gpu.uuid if gpu else None, message,
                                  recommended_action(found.xid))
            self.on_xid(detection)
            return
        reset = nv.GPU_RESET_PATTERN.search(message)
        if reset is not None and reset.group(2) == "true":
            if self.stop_event.wait(self.config.detect_delay_s):
                return
            self.on_gpu_reset(node, reset.group(1))

    def _gpu_by_pci(self, node: str, pci: str):
        gpus = list_gpus(str(self.node_paths(node)[1]))
        return next((g for g in gpus if g.pci == pci.lower()), None)

    # --- after detection --------------------------------------------------------------------------
    def on_xid(self, d: Detection) -> None:
        self.note(f"{d.node}: XID {d.xid} on PCI {d.pci}: action {d.action} ({'fatal' if d.fatal else 'non-fatal'})")
        if not d.fatal:
            self._node_event(d)
            return
        self._set_condition(d.node, True, d.condition_message())
        if self.stop_event.wait(self.config.quarantine_delay_s):
            return
        if not self.quarantine(d):
            return
        if self.stop_event.wait(self.config.drain_delay_s):
            return
        self.drain(d.node)

    def _node_event(self, d: Detection) -> None:
        stamp = now()
        self.kube.create(Ref("v1", "events", "default", ""), {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{d.node}.{time.time_ns():x}", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": d.node, "apiVersion": "v1"},
            "type": nv.XID_CONDITION, "reason": f"{nv.XID_CONDITION}IsNotHealthy", "message": d.condition_message(),
            "source": {"component": AGENT, "host": d.node}, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        })

    def _set_condition(self, node: str, unhealthy: bool, message: str) -> None:
        stamp = now()
        condition = {"type": nv.XID_CONDITION, "status": "True" if unhealthy else "False",
                     "reason": f"{nv.XID_CONDITION}Is{'NotHealthy' if unhealthy else 'Healthy'}",
                     "message": message, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
        self.kube.request("PATCH", f"/api/v1/nodes/{node}/status", content_type=STRATEGIC,
                          body={"status": {"conditions": [condition]}})

    def breaker_tripped(self) -> bool:
        cm = self.kube.get_or_none(Ref("v1", "configmaps", self.config.namespace, nv.CIRCUIT_BREAKER_CONFIGMAP))
        return cm is not None and nv.circuit_breaker_tripped(cm.get("data"))

    def quarantine(self, d: Detection) -> bool:
        if self.breaker_tripped():
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
        if not already:
            if o.unschedulable(node):
                new_annotations[nv.PRE_EXISTING_ANNOTATION] = "True"
            else:
                spec = {"unschedulable": True}
        patch = {"metadata": {"annotations": new_annotations}}
        if not already:
            patch["metadata"]["labels"] = {
                nv.CORDON_BY_LABEL: "NVSentinel", nv.CORDON_REASON_LABEL: cordon_reason(RULESET),
                nv.CORDON_TIMESTAMP_LABEL: time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime()), nv.STATE_LABEL: "quarantined"}
        if spec:
            patch["spec"] = spec
        self.kube.merge_patch(ref, patch)
        self.note(f"{d.node}: quarantined ({'already quarantined' if already else 'cordoned'})")
        self._evaluate_breaker()
        return not already

    def _evaluate_breaker(self) -> None:
        # FQ counts the cluster's GPU nodes (`--gpu-node-label`); in the lab those are the monitored ones.
        nodes = [n for n in self.kube.list(Ref("v1", "nodes", None, ""), label_selector=f"{GPU_PRESENT_LABEL}=true").get("items") or []
                 if n["metadata"]["name"] in self.nodes]
        cordoned = sum(1 for n in nodes if o.unschedulable(n))
        if nodes and cordoned * 100 >= self.config.breaker_percentage * len(nodes):
            self.kube.merge_patch(Ref("v1", "configmaps", self.config.namespace, nv.CIRCUIT_BREAKER_CONFIGMAP),
                                  {"data": {"status": nv.CIRCUIT_BREAKER_TRIPPED}})
            self.note(f"circuit breaker TRIPPED: {cordoned} of {len(nodes)} GPU nodes cordoned")

    def _state(self, node: str, state: str) -> None:
        self.kube.merge_patch(Ref("v1", "nodes", None, node), {"metadata": {"labels": {nv.STATE_LABEL: state}}})
        self.note(f"{node}: {nv.STATE_LABEL}={state}")

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
        self._state(node, "draining")
        for pod in self._drainable(node):
            if o.terminating(pod):
                continue
            meta = pod["metadata"]
            try:
                self.kube.request("POST", Ref("v1", "pods", meta["namespace"], meta["name"]).path() + "/eviction", body={
                    "apiVersion": "policy/v1", "kind": "Eviction",
                    "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                    "deleteOptions": {"gracePeriodSeconds": self.config.eviction_grace_s}})
                self.note(f"{node}: evicted {meta['namespace']}/{meta['name']}")
            except NotFound:
                pass
        try:
            wait_until(lambda: True if not self._drainable(node) else None, what=f"pods gone from {node}",
                       timeout_s=self.config.drain_timeout_s, interval_s=0.1)
        except NotReady:
            self._state(node, "drain-failed")
            return
        self._state(node, "drain-succeeded")

    def on_gpu_reset(self, node: str, uuid: str) -> None:
        """A healthy event for the GPU: clears its entities; the last one un-quarantines the node."""
        gpus = list_gpus(str(self.node_paths(node)[1]))
        gpu = next((g for g in gpus if (g.uuid or "").lower() == uuid.lower()), None)
        if gpu is None:
            self.note(f"{node}: GPU reset of unknown {uuid}: ignored")
            return
        ref = Ref("v1", "nodes", None, node)
        meta = self.kube.get(ref)["metadata"]
        annotations = meta.get("annotations") or {}
        events = json.loads(annotations.get(nv.EVENT_ANNOTATION) or "[]")
        left = [e for e in events if not any(x.get("entityType") == "PCI" and x.get("entityValue") == gpu.pci
                                             for x in e.get("entitiesImpacted") or [])]
        self.note(f"{node}: GPU reset of {uuid} (PCI {gpu.pci}) succeeded: healthy event")
        if left:
            self.kube.merge_patch(ref, {"metadata": {"annotations": {nv.EVENT_ANNOTATION: json.dumps(left)}}})
            return
        if annotations.get(nv.CORDONED_ANNOTATION) == "True":
            patch = {"metadata": {
                "annotations": {nv.EVENT_ANNOTATION: None, nv.CORDONED_ANNOTATION: None, nv.PRE_EXISTING_ANNOTATION: None},
                "labels": {nv.CORDON_BY_LABEL: None, nv.CORDON_REASON_LABEL: None, nv.CORDON_TIMESTAMP_LABEL: None,
                           nv.STATE_LABEL: None, nv.UNCORDON_BY_LABEL: "NVSentinel",
                           nv.UNCORDON_TIMESTAMP_LABEL: time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime())}}}
            if annotations.get(nv.PRE_EXISTING_ANNOTATION) != "True":
                patch["spec"] = {"unschedulable": None}
            self.kube.merge_patch(ref, patch)
            self.note(f"{node}: un-quarantined")
        self._set_condition(node, False, "No Health Failures")
