"""KUBELET SIMULATOR: runs the pods bound to the lab's nodes on this machine and reports their status.

No container runtime runs here, so the kubelet's contract is copied where faultflow and the other
simulators depend on it (Kubernetes "Pod Lifecycle", "Container restart policy", "Pod termination"):

* it acts on pods bound to one of its nodes (`spec.nodeName`), and only on those it can run here:
  pods of a DynamoGraphDeployment (the operator's `nvidia.com/dynamo-graph-deployment-name` label) and
  single-shot pods (`restartPolicy` Never/OnFailure — the steps' toggle-off and node pods);
* init containers run first, in order, each to completion; then the main container;
* a container's command runs as a local process with its hostPath and emptyDir mounts and its image's
  files mapped to local directories (`lab.host_paths`), output appended to the pod's log file;
* GPU workers of a DGD run `lab.worker_process` (the image's `dynamo.<backend>` entry point stands for
  it) with the node's driver library on the library path, as the NVIDIA container toolkit injects
  libcuda; the frontend is the lab's routing frontend (`lab.frontend`), served on the port the operator
  simulator gave the DGD's frontend Service;
* restartPolicy Always: a container that exits is restarted after a crash-loop backoff that doubles up
  to a cap (the kubelet's 10 s → 5 min, shortened for the lab) and `restartCount` grows;
* status: phase, `hostIP` (the node's InternalIP, 127.0.0.1), `podIP` from the node's pod CIDR
  (`lab.pod_network`; nothing listens on it — every pod here shares loopback, so where a process
  listens is the annotation `lab.faultflow.dev/port`), conditions PodScheduled/Initialized/
  ContainersReady/Ready (Ready from a readiness probe: the worker's `GET /health`), containerStatuses
  with running/waiting/terminated states;
* graceful deletion: a pod with `deletionTimestamp` gets SIGTERM, SIGKILL after its grace period,
  then the kubelet deletes it with grace period 0 (what removes a bound pod from the API).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lab.host_paths import PathMap, node_path, translate, volume_map
from lab.informer import start_informer
from lab.layout import LabDir
from lab.pod_network import NODE_ADDRESS, HostLocalIpam
from lab.processes import free_port
from steps.errors import InfrastructureError
from steps.kube import objects as o
from steps.kube.client import Kube, NotFound, Ref
from steps.workload.dynamo import COMPONENT_TYPE_LABEL, DGD_NAME_LABEL, FRONTEND_TYPE, GPU_WORKER_TYPES

PORT_ANNOTATION = "lab.faultflow.dev/port"
FAULTFLOW = str(Path(sys.executable).parent / "faultflow")


@dataclass(frozen=True)
class KubeletConfig:
    lab: LabDir
    nodes: frozenset[str]
    driver_dir: Path  # the driver simulator's libcuda.so.1, "installed" on every GPU node
    pod_cidrs: dict[str, str] = field(default_factory=dict)  # node → its spec.podCIDR
    image_paths: dict[str, Path] = field(default_factory=dict)  # image path → local dir (shim image)
    image_env: dict[str, str] = field(default_factory=dict)  # environment the images set (ENV)
    backoff_s: float = 0.5
    backoff_max_s: float = 4.0
    probe_period_s: float = 0.1
    start_timeout_s: float = 60.0


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def handles(pod: dict, nodes: frozenset[str]) -> bool:
    spec = pod.get("spec") or {}
    if spec.get("nodeName") not in nodes:
        return False
    return DGD_NAME_LABEL in o.labels(pod) or spec.get("restartPolicy") in ("Never", "OnFailure")


def local_argv(argv: list[str]) -> list[str]:
    """What an image's program is on this machine: the steps image's `faultflow` is ours."""
    if argv and argv[0] in ("faultflow", "/usr/local/bin/faultflow"):
        return [FAULTFLOW, *argv[1:]]
    return argv


@dataclass
class ContainerState:
    name: str
    image: str
    ready: bool = False
    restart_count: int = 0
    state: dict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict = field(default_factory=dict)

    def to_status(self) -> dict:
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": "running" in self.state,
            "state": self.state,
            "lastState": self.last_state,
        }


class PodRunner(threading.Thread):
    """One pod's life on its node (one thread per pod)."""

    def __init__(self, kubelet: KubeletSimulator, pod: dict):
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['name']}", daemon=True)
        self.kubelet, self.pod = kubelet, pod
        self.namespace, self.name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.stopping = threading.Event()
        self.process: subprocess.Popen | None = None
        self.ready = False
        self.port: int | None = None
        self.started_at = now()
        self.pod_ip = NODE_ADDRESS  # set when the pod's sandbox starts (run)
        self.grace_s = float(pod["spec"].get("terminationGracePeriodSeconds") or 5)

    # --- what every pod needs ------------------------------------------------------------------
    @property
    def kube(self) -> Kube:
        return self.kubelet.kube

    @property
    def labels(self) -> Mapping[str, str]:
        return o.labels(self.pod)

    def path_map(self, container: dict) -> PathMap:
        cfg = self.kubelet.config
        node_root = cfg.lab.node_root(self.pod["spec"]["nodeName"])
        pod_dir = cfg.lab.pod_dir(self.namespace, self.name)
        mounts = volume_map(container, self.pod["spec"].get("volumes") or [], node_root, pod_dir)
        for local in mounts.values():
            local.mkdir(parents=True, exist_ok=True)  # hostPath DirectoryOrCreate / emptyDir
        return PathMap.of({**cfg.image_paths, **mounts})

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        return {**base, **self.kubelet.config.image_env, **extra}

    def spawn(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.kubelet.config.lab.pod_log(self.namespace, self.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.kubelet.config.lab.root
            )

    def wait_process(self, proc: subprocess.Popen) -> int:
        """Waits for the process; on termination SIGTERM, then SIGKILL after the grace period."""
        while True:
            try:
                return proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self.stopping.is_set():
                    proc.send_signal(signal.SIGTERM)
                    try:
                        return proc.wait(timeout=self.grace_s)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        return proc.wait()

    def run_to_exit(self, container: dict) -> int:
        command = translate(container, self.path_map(container))
        if not command.argv:
            return 0
        self.process = self.spawn(local_argv(command.argv), self.environment(command.env))
        return self.wait_process(self.process)

    def report(self, phase: str, containers: list[ContainerState], *, initialized: bool = True) -> None:
        ready = phase == "Running" and all(c.ready for c in containers)
        self.ready = ready
        status = "True" if ready else "False"
        conditions = [
            {"type": t, "status": s, "lastTransitionTime": now()}
            for t, s in (
                ("PodScheduled", "True"),
                ("Initialized", "True" if initialized else "False"),
                ("ContainersReady", status),
                ("Ready", status),
            )
        ]
        body = {
            "status": {
                "phase": phase,
                "hostIP": NODE_ADDRESS,
                "hostIPs": [{"ip": NODE_ADDRESS}],
                "podIP": self.pod_ip,
                "podIPs": [{"ip": self.pod_ip}],
                "startTime": self.started_at,
                "conditions": conditions,
                "containerStatuses": [c.to_status() for c in containers],
            }
        }
        try:
            self.kube.request(
                "PATCH",
                Ref("v1", "pods", self.namespace, self.name).path() + "/status",
                body=body,
                content_type="application/merge-patch+json",
            )
        except (NotFound, InfrastructureError):
            pass  # deleted meanwhile, or the API server is going away with the lab

    def containers(self) -> list[ContainerState]:
        return [ContainerState(c["name"], c.get("image", "")) for c in self.pod["spec"]["containers"]]

    def init_containers(self, states: list[ContainerState]) -> bool:
        for container in self.pod["spec"].get("initContainers") or []:
            if self.stopping.is_set():
                return False
            code = self.run_to_exit(container)
            if code != 0:
                self.log(f"init container {container['name']} exited with {code}")
                return False
        return True

    def log(self, text: str) -> None:
        log = self.kubelet.config.lab.pod_log(self.namespace, self.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as out:
            out.write(f"kubelet-simulator: {text}\n")

    def terminate(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        spec = self.pod["spec"]
        self.pod_ip = self.kubelet.ipam.allocate(spec["nodeName"], self.uid, bool(spec.get("hostNetwork")))
        try:
            self.live()
        finally:
            self.ready = False
            if self.stopping.is_set():
                self.kubelet.finalize(self)

    def live(self) -> None:  # overridden
        raise NotImplementedError


class OneShotRunner(PodRunner):
    """restartPolicy Never/OnFailure: every container once, in order; the pod ends Succeeded or Failed."""

    def live(self) -> None:
        states = self.containers()
        self.report("Pending", states, initialized=False)
        if not self.init_containers(states):
            self.report("Failed", states, initialized=False)
            return
        for state, container in zip(states, self.pod["spec"]["containers"]):
            state.state, state.ready = {"running": {"startedAt": now()}}, True
            self.report("Running", states)
            code = self.run_to_exit(container)
            state.ready = False
            state.state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": self.started_at,
                    "finishedAt": now(),
                }
            }
            if code != 0:
                self.report("Failed", states)
                return
        self.report("Succeeded", states)


class ServingRunner(PodRunner):
    """restartPolicy Always: start the serving process, probe it ready, restart it when it exits."""

    def serve_once(self, states: list[ContainerState]) -> int:  # overridden: returns the exit code
        raise NotImplementedError

    def live(self) -> None:
        states = self.containers()
        self.report("Pending", states, initialized=False)
        backoff = self.kubelet.config.backoff_s
        while not self.init_containers(states):  # Init:CrashLoopBackOff
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.kubelet.config.backoff_max_s)
        backoff = self.kubelet.config.backoff_s
        main = states[self.main_index()]
        while not self.stopping.is_set():
            started = time.monotonic()
            main.state = {"running": {"startedAt": now()}}
            code = self.serve_once(states)
            if self.stopping.is_set():
                return
            main.ready = False
            main.restart_count += 1
            main.last_state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Error" if code else "Completed",
                    "startedAt": main.state["running"]["startedAt"],
                    "finishedAt": now(),
                }
            }
            main.state = {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off {backoff:.1f}s restarting failed container"}}
            self.report("Running", states)
            if time.monotonic() - started > 10 * self.kubelet.config.backoff_max_s:
                backoff = self.kubelet.config.backoff_s  # it ran long enough: the kubelet resets the backoff
            if self.stopping.wait(backoff):
                return
            backoff = min(backoff * 2, self.kubelet.config.backoff_max_s)

    def main_index(self) -> int:
        names = [c["name"] for c in self.pod["spec"]["containers"]]
        return names.index("main") if "main" in names else 0

    def mark_others_running(self, states: list[ContainerState]) -> None:
        # Sidecars have nothing to run here; they count as started and ready.
        for index, state in enumerate(states):
            if index != self.main_index():
                state.state, state.ready = {"running": {"startedAt": self.started_at}}, True


class WorkerRunner(ServingRunner):
    """A DGD GPU worker: `lab.worker_process` under the container's environment (LD_PRELOAD and all)."""

    def serve_once(self, states: list[ContainerState]) -> int:
        self.mark_others_running(states)
        main = states[self.main_index()]
        container = self.pod["spec"]["containers"][self.main_index()]
        if self.port is None:
            self.port = free_port()
            self.kubelet.annotate_port(self)
        command = translate(container, self.path_map(container))
        # The driver simulator answers each device's PCI bus id from the node's driver /proc tree, as the
        # real driver knows its GPUs: the shim matches a toggle's bus id (inject-xid's XID GPU) against it.
        node_proc = node_path(self.kubelet.config.lab.node_root(self.pod["spec"]["nodeName"]), "/proc")
        driver = {"SIM_PROC_ROOT": str(node_proc)} if (node_proc / "driver/nvidia/gpus").is_dir() else {}
        env = self.environment({**command.env, "LD_LIBRARY_PATH": str(self.kubelet.config.driver_dir), **driver})
        argv = [sys.executable, "-m", "lab.worker_process", "--port", str(self.port), "--name", self.name]
        self.report("Running", states)
        self.process = self.spawn(argv, env)
        if self.probe_ready(self.process):
            main.ready = True
            self.report("Running", states)
        return self.wait_process(self.process)

    def probe_ready(self, proc: subprocess.Popen) -> bool:
        """The readiness probe: `GET /health` every period until 200, the process exits or the deadline."""
        import http.client

        deadline = time.monotonic() + self.kubelet.config.start_timeout_s
        while proc.poll() is None and not self.stopping.is_set() and time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            try:
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return True
            except OSError:
                pass
            finally:
                connection.close()
            self.stopping.wait(self.kubelet.config.probe_period_s)
        return False


class FrontendRunner(ServingRunner):
    """The DGD's frontend: the lab's routing frontend on the port of the DGD's frontend Service."""

    def serve_once(self, states: list[ContainerState]) -> int:
        from lab.frontend import LabFrontend

        self.mark_others_running(states)
        self.port = int(o.annotations_of(self.pod).get(PORT_ANNOTATION) or 0) or free_port()
        dgd = self.labels[DGD_NAME_LABEL]
        frontend = LabFrontend(port=self.port, endpoints=lambda: self.kubelet.ready_endpoints(self.namespace, dgd))
        try:
            frontend.start()
        except OSError as error:
            self.log(f"frontend cannot listen on {self.port}: {error}")
            return 1
        self.log(f"frontend serving the OpenAI API on {frontend.url}")
        states[self.main_index()].ready = True
        self.report("Running", states)
        self.stopping.wait()
        frontend.stop()
        return 0


class IdleRunner(ServingRunner):
    """Other DGD components (planner, router…): nothing of theirs is simulated; they run and are ready."""

    def serve_once(self, states: list[ContainerState]) -> int:
        for state in states:
            state.state, state.ready = {"running": {"startedAt": self.started_at}}, True
        self.report("Running", states)
        self.stopping.wait()
        return 0


def runner_for(kubelet: KubeletSimulator, pod: dict) -> PodRunner:
    labels = o.labels(pod)
    if DGD_NAME_LABEL not in labels:
        return OneShotRunner(kubelet, pod)
    kind = labels.get(COMPONENT_TYPE_LABEL, "")
    if kind in GPU_WORKER_TYPES:
        return WorkerRunner(kubelet, pod)
    if kind == FRONTEND_TYPE:
        return FrontendRunner(kubelet, pod)
    return IdleRunner(kubelet, pod)


class KubeletSimulator:
    """The kubelet of every lab node at once: one informer over bound pods, one runner per pod."""

    def __init__(self, kube: Kube, config: KubeletConfig):
        self.kube, self.config = kube, config
        self.ipam = HostLocalIpam(dict(config.pod_cidrs))
        self.runners: dict[str, PodRunner] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> KubeletSimulator:
        self.thread = start_informer(
            "kubelet-simulator", self.kube, Ref("v1", "pods", None, ""), self.on_event, self.stop_event, field_selector="spec.nodeName!="
        )
        return self

    def on_event(self, kind: str, pod: dict) -> None:
        if not handles(pod, self.config.nodes):
            return
        uid = pod["metadata"]["uid"]
        with self.lock:
            runner = self.runners.get(uid)
            if kind == "DELETED" or o.terminating(pod):
                if runner is None and kind != "DELETED":
                    self.finalize_pod(pod)  # a pod we never ran (terminal before we started)
                elif runner is not None:
                    runner.terminate()
                return
            if runner is None and not o.finished(pod):
                runner = runner_for(self, pod)
                self.runners[uid] = runner
                runner.start()

    def running(self, namespace: str, name: str) -> bool:
        """A pod of that name runs here: its runner thread lives as long as the pod's processes do
        (through their termination grace period, when they may still write)."""
        with self.lock:
            return any(r.namespace == namespace and r.name == name and r.is_alive() for r in self.runners.values())

    def finalize(self, runner: PodRunner) -> None:
        with self.lock:
            self.runners.pop(runner.uid, None)
        self.ipam.release(runner.uid)  # the sandbox is torn down: its address is free again
        self.finalize_pod(runner.pod)

    def finalize_pod(self, pod: dict) -> None:
        """The kubelet's final delete (grace period 0) once the pod's processes are gone."""
        meta = pod["metadata"]
        try:
            self.kube.request(
                "DELETE",
                Ref("v1", "pods", meta["namespace"], meta["name"]).path(),
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )
        except (NotFound, InfrastructureError):
            pass  # already gone, or a newer pod of the same name (uid precondition)

    def annotate_port(self, runner: PodRunner) -> None:
        try:
            self.kube.merge_patch(
                Ref("v1", "pods", runner.namespace, runner.name), {"metadata": {"annotations": {PORT_ANNOTATION: str(runner.port)}}}
            )
        except (NotFound, InfrastructureError):
            pass

    def ready_endpoints(self, namespace: str, dgd: str) -> list[str]:
        """Loopback URLs of the DGD's GPU workers that are Ready now (what the frontend routes to)."""
        with self.lock:
            runners = list(self.runners.values())
        return [
            f"http://127.0.0.1:{r.port}"
            for r in runners
            if isinstance(r, WorkerRunner)
            and r.ready
            and r.namespace == namespace
            and r.labels.get(DGD_NAME_LABEL) == dgd
            and not r.stopping.is_set()
        ]

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stops every pod's processes (the node shutting down); API objects are left as they are."""
        self.stop_event.set()
        with self.lock:
            runners = list(self.runners.values())
            self.runners.clear()
        for runner in runners:
            runner.kubelet = _Detached(runner.kubelet)  # no API writes while the lab shuts down
            runner.terminate()
        deadline = time.monotonic() + timeout_s
        for runner in runners:
            runner.join(max(0.1, deadline - time.monotonic()))


class _Detached:
    """A kubelet that forgets finalisation: used while stopping, when the API server may be gone."""

    def __init__(self, kubelet: KubeletSimulator):
        self.kube, self.config, self.ipam = kubelet.kube, kubelet.config, kubelet.ipam

    def finalize(self, runner: PodRunner) -> None:
        pass

    def ready_endpoints(self, namespace: str, dgd: str) -> list[str]:
        return []

    def annotate_port(self, runner: PodRunner) -> None:
        pass
