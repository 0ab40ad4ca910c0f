"""A real Kubernetes cluster on this machine: control plane in a "hub" namespace, real nodes around it.

    host ── 127.0.0.1:<port> ──relay──┐
                                      hub (netns+mountns+pidns): bridge lab0 10.250.0.1/24
                                        etcd, kube-apiserver (Node,RBAC + NodeRestriction),
                                        kube-controller-manager, kube-scheduler
                                      ├─veth── gpu-0 (10.250.0.10, pods 10.244.0.0/24)
                                      ├─veth── …
                                      └─veth── cpu-0

Every node is `lab.nodes.node`: containerd + CNI bridge + kubelet (`system:node:<name>`) +
kube-proxy. Nothing is added to the machine's own network namespace, mount table or sysctls; every
process and cgroup made is recorded in `<dir>/made.jsonl` first (`lab.nodes.ledger`), so
`RealCluster.stop()` — or `teardown(dir)` after the lab process was SIGKILLed — removes all of it.
The envtest clusters (`lab.controlplane.start_cluster`) stay as they are: this is a distinct kind.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lab import pki, processes, tools
from lab.controlplane import apiserver_argv
from lab.etcd import etcd_argv
from lab.gpu_nodes import GPU_PRESENT_LABEL
from lab.images import build as images
from lab.nodes import gpu_plugin, namespaces, packages
from lab.nodes import node as nodes
from lab.nodes.ledger import Ledger
from lab.nodes.ledger import teardown as ledger_teardown
from lab.rest import ApiError, Rest
from steps.gpu.nvsentinel import DRIVER_INSTALLED_LABEL

HUB_IP = "10.250.0.1"
NODE_NETWORK = "10.250.0"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"
DNS_SERVICE_IP = "10.0.0.10"
APISERVER_PORT = 6443
START_TIMEOUT_S = 120
NODE_READY_TIMEOUT_S = 120


def ledger_of(folder: Path) -> Ledger:
    return Ledger(folder / "made.jsonl")


def teardown(folder: Path) -> dict:
    """Remove every process and cgroup a real lab in `folder` made (safe after any crash, and twice)."""
    return ledger_teardown(ledger_of(folder))


# What the GPU Operator and NVSentinel's labeler put on a GPU node (the kubelet sets them at registration).
GPU_LABELS = ((GPU_PRESENT_LABEL, "true"), (DRIVER_INSTALLED_LABEL, "true"), ("nvsentinel.dgxc.nvidia.com/kata.enabled", "false"))


def plan_nodes(
    gpu_nodes: int = 3, cpu_nodes: int = 1, gpus_per_node: int = 8, hostnames: dict[str, str] | None = None
) -> list[nodes.NodePlan]:
    """`hostnames`: node name -> a `kubernetes.io/hostname` label that differs from it."""
    names = [(f"gpu-{i}", gpus_per_node) for i in range(gpu_nodes)] + [(f"cpu-{i}", 0) for i in range(cpu_nodes)]
    hostnames = hostnames or {}
    if unknown := set(hostnames) - {name for name, _ in names}:
        raise ValueError(f"hostnames for nodes the plan does not have: {sorted(unknown)}")
    return [
        nodes.NodePlan(
            name, i, f"{NODE_NETWORK}.{10 + i}", f"10.244.{i}.0/24", labels=GPU_LABELS if gpus else (), gpus=gpus,
            hostname=hostnames.get(name, ""),
        )
        for i, (name, gpus) in enumerate(names)
    ]  # fmt: skip


@dataclass
class RealCluster:
    folder: Path
    plans: list[nodes.NodePlan]
    coredns: bool = True
    # More images every node gets (beyond pause, busybox and CoreDNS), e.g. images.ensure_debian.
    extra_images: tuple = ()
    ledger: Ledger = field(init=False)
    hub: namespaces.Namespaces | None = None
    keys: pki.Pki | None = None
    server: str = ""  # the relay's address, as the host reaches the API server
    kubeconfig: Path | None = None
    nodes: dict[str, nodes.Node] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    control_plane: dict[str, processes.Process] = field(default_factory=dict)

    def __post_init__(self):
        self.folder = self.folder.absolute()
        self.ledger = ledger_of(self.folder)

    @property
    def lab_id(self) -> str:
        # Cgroup names are machine-wide: two labs (two engineers' tests) must not share one.
        return hashlib.sha256(str(self.folder).encode()).hexdigest()[:8]

    def node_paths(self, name: str) -> tuple[Path, Path]:
        """A node's kernel log (what its /dev/kmsg received) and NVSentinel's gpu_metadata.json in its
        root, as the host reaches them: what the NVSentinel simulator reads (`NvsentinelSimulator(node_paths=...)`)."""
        node = self.nodes[name]
        return node.kmsg_log, Path(f"/proc/{node.ns.pid}/root/var/lib/nvsentinel/gpu_metadata.json")

    def rest(self) -> Rest:
        return Rest.with_client_cert(self.server, str(self.keys.ca_cert), str(self.keys.admin_cert), str(self.keys.admin_key))

    # ---- start -------------------------------------------------------------------------------
    def start(self) -> RealCluster:
        started = time.monotonic()
        if live := self.ledger.live_pids():
            raise RuntimeError(f"a lab is already up in {self.folder} ({len(live)} of its processes run)")
        # What a crashed lab left here (its cgroups) goes first; then a fresh record.
        ledger_teardown(self.ledger)
        self.ledger.path.unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "logs").mkdir(exist_ok=True)
        try:
            self._prepare()
            self._start_control_plane()
            self._start_nodes()
            self._wait_nodes_ready()
            self._wait_gpus_advertised()
            if self.coredns:
                self._start_coredns()
        except BaseException:
            self.stop()
            raise
        self.figures["lab_up_s"] = time.monotonic() - started
        return self

    def _prepare(self) -> None:
        """What the lab needs that is built or installed once per machine (each step prints progress)."""
        packages.ensure_installed()
        for tool in (
            tools.ETCD,
            tools.KUBE_APISERVER,
            tools.KUBE_SCHEDULER,
            tools.KUBE_PROXY,
            tools.KUBE_CONTROLLER_MANAGER,
            tools.KUBELET,
        ):
            tools.ensure_built(tool)
        if any(plan.gpus for plan in self.plans):
            gpu_plugin.ensure_built()
        self.images = [images.ensure_pause(), images.ensure_busybox()]
        if self.coredns:
            self.images.append(images.ensure_coredns())
        self.images += [ensure() for ensure in self.extra_images]

    def _start_control_plane(self) -> None:
        started = time.monotonic()
        hub_dir = self.folder / "hub"
        self.hub = namespaces.hold("hub", hub_dir, self.ledger, mounts=[], kmsg_log=None)
        self.hub.run(
            ["sh", "-ec", f"ip link set lo up; ip link add lab0 type bridge; ip addr add {HUB_IP}/24 dev lab0; ip link set lab0 up"],
            net_only=True,
        )
        self.keys = pki.create(
            self.folder / "pki",
            keep_ca_key=True,
            serving_ips=(HUB_IP, KUBERNETES_SERVICE_IP),
            serving_dns=("kubernetes", "kubernetes.default", "kubernetes.default.svc.cluster.local"),
        )
        logs = self.folder / "logs"
        self.control_plane["etcd"] = self.hub.start("etcd", etcd_argv(hub_dir / "etcd", 2379, 2380), logs / "etcd.log", self.ledger)
        argv = apiserver_argv(
            tools.ensure_built(tools.KUBE_APISERVER),
            port=APISERVER_PORT,
            etcd_url="http://127.0.0.1:2379",
            keys=self.keys,
            folder=hub_dir,
            overrides={
                "--bind-address": "0.0.0.0",  # inside the hub: the nodes and the relay reach it
                "--advertise-address": HUB_IP,
                # The `kubernetes` Service's endpoint is the hub address, which pods reach.
                "--endpoint-reconciler-type": None,
                "--service-cluster-ip-range": SERVICE_CIDR,
                "--authorization-mode": "Node,RBAC",
                "--enable-admission-plugins": "NodeRestriction",
            },
        )
        self.control_plane["kube-apiserver"] = self.hub.start("kube-apiserver", argv, logs / "kube-apiserver.log", self.ledger)
        port_file = hub_dir / "relay.port"
        relay = processes.start(
            "relay",
            [sys.executable, "-m", "lab.nodes.relay", str(self.hub.pid), f"127.0.0.1:{APISERVER_PORT}", str(port_file)],
            logs / "relay.log",
        )
        self.ledger.pid(relay.popen.pid, "relay")
        self.control_plane["relay"] = relay
        port = processes.wait_until(
            lambda: port_file.read_text() if port_file.is_file() else None, what="relay port", timeout_s=30, process=relay
        )
        self.server = f"https://127.0.0.1:{port}"
        self.kubeconfig = self.folder / "kubeconfig"
        self.kubeconfig.write_text(nodes.kubeconfig(self.server, self.keys.ca_cert, self.keys.admin_cert, self.keys.admin_key, "admin"))
        rest = self.rest()
        processes.wait_until(
            lambda: True if _status(rest, "/readyz") == 200 else None,
            what="kube-apiserver /readyz",
            timeout_s=START_TIMEOUT_S,
            process=self.control_plane["kube-apiserver"],
        )
        self.figures["control_plane_s"] = time.monotonic() - started  # hub + etcd + kube-apiserver ready
        inside = f"https://127.0.0.1:{APISERVER_PORT}"
        kcm = self._component_kubeconfig("kube-controller-manager", "system:kube-controller-manager", inside)
        self.control_plane["kube-controller-manager"] = self.hub.start(
            "kube-controller-manager",
            [
                str(tools.ensure_built(tools.KUBE_CONTROLLER_MANAGER)),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                "--secure-port=0",
                "--leader-elect=false",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.keys.sa_private_key}",
                f"--root-ca-file={self.keys.ca_cert}",
                # its default is a host directory it would create
                f"--flex-volume-plugin-dir={hub_dir / 'flex-volume'}",
                "--profiling=false",
                "--v=1",
            ],
            logs / "kube-controller-manager.log",
            self.ledger,
        )
        sched = self._component_kubeconfig("kube-scheduler", "system:kube-scheduler", inside)
        self.control_plane["kube-scheduler"] = self.hub.start(
            "kube-scheduler",
            [
                str(tools.ensure_built(tools.KUBE_SCHEDULER)),
                f"--kubeconfig={sched}",
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                "--secure-port=0",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
            logs / "kube-scheduler.log",
            self.ledger,
        )

    def _component_kubeconfig(self, stem: str, user: str, server: str) -> Path:
        cert, key = self.keys.issue(stem, user)
        path = self.folder / "pki" / f"{stem}.kubeconfig"
        path.write_text(nodes.kubeconfig(server, self.keys.ca_cert, cert, key, user))
        return path

    def _start_nodes(self) -> None:
        """Namespaces, network and containerd node by node; image imports on all nodes at once (disk
        and decompression, not this process); then every kubelet and kube-proxy, so each node's
        `node_ready_s` (kubelet start → Ready) is measured on its own."""
        started = time.monotonic()
        for plan in self.plans:
            node = nodes.create(plan, self.folder / "nodes" / plan.name, self.ledger, self.lab_id)
            self.nodes[plan.name] = node
            nodes.wire(node, self.hub, HUB_IP, self.plans)
            nodes.start_runtime(node, self.ledger)
        with ThreadPoolExecutor(max_workers=len(self.nodes) or 1) as pool:
            for result in [pool.submit(nodes.import_images, node, self.images) for node in self.nodes.values()]:
                result.result()
        self.figures["nodes_runtime_s"] = time.monotonic() - started
        server = f"https://{HUB_IP}:{APISERVER_PORT}"
        proxy = self._component_kubeconfig("kube-proxy", "system:kube-proxy", server)
        for name, node in self.nodes.items():
            nodes.start_kubelet(node, self.ledger, self.keys, server, "/" + nodes.cgroup_name(self.lab_id, name), DNS_SERVICE_IP)
            nodes.start_kube_proxy(node, self.ledger, proxy, CLUSTER_CIDR)

    def _wait_nodes_ready(self) -> None:
        rest = self.rest()
        pending = dict(self.nodes)
        deadline = time.monotonic() + NODE_READY_TIMEOUT_S
        while pending:
            for name in list(pending):
                node = pending[name]
                if node_ready(rest, name):
                    self.figures[f"node_ready_s.{name}"] = time.monotonic() - node.kubelet_started
                    del pending[name]
                elif not node.kubelet.running():
                    raise processes.NotReady(f"kubelet of {name} exited (rc={node.kubelet.popen.returncode}):\n{node.kubelet.log_tail()}")
            if time.monotonic() > deadline:
                tails = "\n".join(f"{n}: {pending[n].kubelet.log_tail(8)}" for n in pending)
                raise processes.NotReady(f"nodes not Ready after {NODE_READY_TIMEOUT_S}s: {sorted(pending)}\n{tails}")
            if pending:
                time.sleep(0.1)  # polling the API for the nodes' Ready condition until the deadline

    def _wait_gpus_advertised(self) -> None:
        """Each GPU node's kubelet publishes its device plugin's GPUs as allocatable nvidia.com/gpu.

        The plugins start once their kubelet is up: a starting kubelet empties the device-plugin
        directory, removing any plugin socket already there."""
        rest = self.rest()
        for node in self.nodes.values():
            if node.plan.gpus:
                nodes.start_device_plugin(node, self.ledger)
        for node in self.nodes.values():
            if node.plan.gpus:
                count = str(node.plan.gpus)
                processes.wait_until(
                    lambda n=node.plan.name, c=count: (
                        True if rest.get(f"/api/v1/nodes/{n}")["status"].get("allocatable", {}).get("nvidia.com/gpu") == c else None
                    ),
                    what=f"{node.plan.name} allocatable nvidia.com/gpu = {count}",
                    timeout_s=60,
                    process=node.device_plugin,
                )

    def _start_coredns(self) -> None:
        from lab.nodes import coredns

        coredns.install(self.rest(), images.coredns().ref, DNS_SERVICE_IP)

    # ---- stop --------------------------------------------------------------------------------
    def stop(self) -> dict:
        """Kill everything the ledger records (the node holders take their namespaces with them) and
        remove the cgroups. Files stay under `folder` for the caller to keep or delete."""
        return ledger_teardown(self.ledger)


def _merge_patch(rest: Rest, path: str, body: dict) -> dict:
    import urllib.error
    import urllib.request

    request = rest._request("PATCH", path, body, content_type="application/merge-patch+json")
    try:
        with urllib.request.urlopen(request, context=rest.context, timeout=30) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as err:
        raise ApiError(err.code, err.read().decode(errors="replace"), "PATCH", path) from None


def _status(rest: Rest, path: str) -> int | None:
    try:
        return rest.status(path)
    except OSError:
        return None


def node_ready(rest: Rest, name: str) -> bool:
    try:
        node = rest.get(f"/api/v1/nodes/{name}")
    except (ApiError, OSError):
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))


def teardown_summary(result: dict) -> str:
    return f"{len(result['killed'])} processes killed, {len(result['cgroups_removed'])} cgroups removed"


def figures_line(figures: dict[str, float]) -> str:
    return json.dumps({k: round(v, 2) for k, v in figures.items()})
