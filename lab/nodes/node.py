"""One real lab node: its namespaces, cgroups, containerd, CNI bridge, kubelet and kube-proxy.

A node is a network namespace + a private mount namespace + its own PID namespace, held by
`lab.nodes.nsinit` (see `lab.nodes.namespaces`). Inside its mount namespace the paths the components
hard-code are the node's own:

* `/run` is a fresh tmpfs (containerd's runc root and shim sockets);
* `/var/lib` is an overlay over the host's with the node's own upper directory (the kubelet's
  device-plugin socket, CNI's result cache, whatever else writes there stays per node);
* `/var/log` is a per-node directory (the kubelet's `/var/log/containers` links);
* the kernel tunables the kubelet insists on (`KUBELET_SYSCTLS`) are files holding its values, bound
  over `/proc/sys/...`: it reads what it wants and never writes the host's global sysctls;
* `/dev/kmsg` is the slave of a pty whose master the node's holder copies to the node's kernel log
  file `/var/log/kmsg.log` (`<node>/varlog/kmsg.log` on the host): the node's journal, as a node's
  syslog monitor reads it (NVSentinel's DaemonSet mounts it: `lab.simulators.nvsentinel`).

Per-node cgroups (`/sys/fs/cgroup/<hierarchy>/<cgroup_name>`, the kubelet's `cgroupRoot`) hold the
node's pods. kube-proxy runs in the node's network namespace with conntrack tuning off (those sysctls
are global), so its iptables rules stay there.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from lab import pki, processes, tools
from lab.images import build as images
from lab.nodes import driver_proc, namespaces
from lab.nodes.ledger import Ledger
from steps.gpu import toggle
from steps.gpu.toggle_pod import TOGGLE_UID

CGROUP_FS = Path("/sys/fs/cgroup")
CNI_BIN = "/usr/lib/cni"
# setupKernelTunables in pkg/kubelet/cm/container_manager_linux.go (v1.37.2): path -> the value it wants.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
CONTAINERD_READY_S = 30
# The node's toggle (what `faultflow shim on --file` and inject-cuda-shim write on a node), in its own /var/lib.
TOGGLE_FILE = toggle.file_in(toggle.DEFAULT_DIR)
# Sockets live in the node's own /run (a tmpfs), at their usual short paths: a unix socket path has at
# most 107 bytes, which a lab directory under a test's tmp folder would exceed.
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
KERNEL_LOG = "/var/log/kmsg.log"  # inside the node: what its /dev/kmsg received, record by record


@dataclass(frozen=True)
class NodePlan:
    name: str
    index: int
    ip: str  # on the lab's cluster network (the hub bridge)
    pod_cidr: str
    labels: tuple[tuple[str, str], ...] = ()
    gpus: int = 0  # GPU nodes get the driver's /proc tree and advertise nvidia.com/gpu
    # The `kubernetes.io/hostname` label when it is not the node's name, as on clouds whose nodes are
    # named apart from their hostnames: what shows that pods are pinned by name, not by that label.
    hostname: str = ""

    @property
    def kubelet_labels(self) -> tuple[tuple[str, str], ...]:
        return (*self.labels, ("kubernetes.io/hostname", self.hostname)) if self.hostname else self.labels

    @property
    def veth(self) -> str:
        return f"ffn{self.index}"  # the hub's end of the node's link (interface names: 15 bytes at most)


@dataclass
class Node:
    plan: NodePlan
    folder: Path
    ns: namespaces.Namespaces
    containerd: processes.Process | None = None
    kubelet: processes.Process | None = None
    kube_proxy: processes.Process | None = None
    device_plugin: processes.Process | None = None
    kubelet_started: float = 0.0

    @property
    def socket(self) -> Path:
        """containerd's socket as the host reaches it (through the node's mount namespace)."""
        return Path(f"/proc/{self.ns.pid}/root{CONTAINERD_SOCKET}")

    @property
    def kmsg_log(self) -> Path:
        """The node's kernel log (`KERNEL_LOG` inside), as the host reaches it."""
        return self.folder / "varlog" / Path(KERNEL_LOG).name

    @property
    def toggle_file(self) -> Path:
        """The node's toggle file (its /var/lib/faultflow/toggle) as the host reaches it."""
        return Path(f"/proc/{self.ns.pid}/root{TOGGLE_FILE}")


def cgroup_name(lab_id: str, node: str) -> str:
    return f"faultflow-{lab_id}-{node}"


def make_cgroups(name: str, ledger: Ledger) -> None:
    """The node's cgroup in every hierarchy, recorded before it is made (runc also writes the
    unified hierarchy of this hybrid layout, so it gets one too)."""
    for hierarchy in sorted(p for p in CGROUP_FS.iterdir() if p.is_dir()):
        path = hierarchy / name
        ledger.cgroup(path)
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":  # a new cpuset has no CPUs or memory nodes until given some
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (path / knob).write_text((hierarchy / knob).read_text())


def _mounts(folder: Path, gpus: int) -> list[dict]:
    for sub in ("varlib-upper", "varlib-work", "varlog", "sysctl"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    mounts = [
        {"type": "tmpfs", "target": "/run"},
        {"type": "overlay", "target": "/var/lib", "upper": str(folder / "varlib-upper"), "work": str(folder / "varlib-work")},
        {"type": "bind", "source": str(folder / "varlog"), "target": "/var/log"},
    ]
    if gpus:
        # The node's own /proc/driver (the host's is empty): nvidia/gpus/<bus id>/information, filled
        # by `write_driver_tree` through the holder's view of it.
        mounts.append({"type": "tmpfs", "target": "/proc/driver"})
    for key, value in KUBELET_SYSCTLS.items():
        holder = folder / "sysctl" / key.replace("/", ".")
        holder.write_text(f"{value}\n")
        mounts.append({"type": "bind", "source": str(holder), "target": f"/proc/sys/{key}"})
    return mounts


def containerd_config(folder: Path, pause: str, pod_cidr_conf: Path, base_spec: Path | None = None) -> str:
    c = folder / "c"
    # GPU nodes start every container from a spec carrying the driver's /proc hook (lab.nodes.driver_proc).
    base = f'\n      base_runtime_spec = "{base_spec}"' if base_spec else ""
    return f"""version = 2
root = "{c / "root"}"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{CONTAINERD_SOCKET}"
[ttrpc]
  address = "{CONTAINERD_SOCKET}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # This machine's root lacks CAP_SYS_RESOURCE: never lower a process's OOM score adjustment.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"{base}
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{pod_cidr_conf}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / "opt"}"
"""


def cni_conflist(folder: Path, pod_cidr: str) -> dict:
    return {
        "cniVersion": "1.0.0",
        "name": "faultflow-lab",
        "plugins": [
            {
                "type": "bridge", "bridge": "cni0", "isGateway": True, "hairpinMode": True,
                # Pod addresses are routed across the lab (every node and the hub know each range),
                # so pods see each other's real addresses.
                "ipMasq": False,
                "ipam": {"type": "host-local", "dataDir": str(folder / "ipam"), "ranges": [[{"subnet": pod_cidr}]],
                         "routes": [{"dst": "0.0.0.0/0"}]},
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }  # fmt: skip


def kubelet_config(node: Node, keys: pki.Pki, serving: tuple[Path, Path], cgroup_root: str, cluster_dns: str) -> dict:
    folder = node.folder
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.plan.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(serving[0]),
        "tlsPrivateKeyFile": str(serving[1]),
        # As on a real node: the API server's client certificate is checked against the lab CA, and
        # each request is authorized by the API server (SubjectAccessReview).
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(keys.ca_cert)}},
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failCgroupV1": False,  # this machine has cgroup v1, which 1.37 refuses unless told
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        "podLogsDir": str(folder / "pod-logs"),
        "volumePluginDir": str(folder / "volume-plugins"),
        "resolvConf": "",  # pods never see the machine's resolvers
        "clusterDNS": [cluster_dns],
        "clusterDomain": "cluster.local",
        "registerNode": True,
        "serializeImagePulls": False,
        # Every node sees the whole machine: thresholds low enough that a busy machine evicts nothing.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }  # fmt: skip


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
        "current-context": "lab",
    }, indent=2)  # fmt: skip


def create(plan: NodePlan, folder: Path, ledger: Ledger, lab_id: str) -> Node:
    """The node's cgroups and namespaces (nothing runs in them yet)."""
    folder.mkdir(parents=True, exist_ok=True)
    make_cgroups(cgroup_name(lab_id, plan.name), ledger)
    mounts = _mounts(folder, plan.gpus)  # makes varlog/, where the kernel log is copied
    ns = namespaces.hold(plan.name, folder, ledger, mounts=mounts, kmsg_log=folder / "varlog" / Path(KERNEL_LOG).name)
    node = Node(plan=plan, folder=folder, ns=ns)
    if plan.gpus:
        write_driver_tree(node)
    return node


def write_driver_tree(node: Node) -> None:
    """/proc/driver/nvidia/gpus/<bus id>/information for each GPU, as the driver lays it out (what
    steps.gpu.pci reads), inside the node only."""
    from lab.gpu_nodes import bus_id, information

    root = Path(f"/proc/{node.ns.pid}/root/proc/driver/nvidia/gpus")
    for gpu in range(node.plan.gpus):
        bus = bus_id(node.plan.index, gpu)
        (root / bus).mkdir(parents=True)
        (root / bus / "information").write_text(information(node.plan.name, gpu, bus))


def wire(node: Node, hub: namespaces.Namespaces, hub_ip: str, others: list[NodePlan]) -> None:
    """A veth from the hub's bridge into the node (its eth0), and routes to every other node's pods."""
    plan = node.plan
    hub.run(["ip", "link", "add", plan.veth, "type", "veth", "peer", "name", "eth0", "netns", str(node.ns.pid)], net_only=True)
    hub.run(["ip", "link", "set", plan.veth, "master", "lab0", "up"], net_only=True)
    hub.run(["ip", "route", "add", plan.pod_cidr, "via", plan.ip], net_only=True)
    script = ["ip link set lo up", f"ip addr add {plan.ip}/24 dev eth0", "ip link set eth0 up", f"ip route add default via {hub_ip}"]
    script += [f"ip route add {o.pod_cidr} via {o.ip}" for o in others if o.name != plan.name]
    node.ns.run(["sh", "-ec", "; ".join(script)], net_only=True)


def start_runtime(node: Node, ledger: Ledger) -> None:
    """containerd inside the node (call from the thread that lives as long as the node: see
    lab.processes, PR_SET_PDEATHSIG); `import_images` then fills it."""
    folder = node.folder
    (folder / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
    (folder / "cni" / "net.d" / "10-bridge.conflist").write_text(json.dumps(cni_conflist(folder, node.plan.pod_cidr), indent=2))
    (folder / "c").mkdir(exist_ok=True)
    config = folder / "c" / "config.toml"
    base_spec = None
    if node.plan.gpus:
        base_spec = folder / "c" / "base-spec.json"
        base_spec.write_text(json.dumps(driver_proc.base_spec(driver_proc.hook_argv()), indent=2))
    config.write_text(containerd_config(folder, images.PAUSE.ref, folder / "cni" / "net.d", base_spec))
    node.containerd = node.ns.start("containerd", ["containerd", "--config", str(config)], folder / "containerd.log", ledger)
    processes.wait_until(
        lambda: True if node.socket.is_socket() else None,
        what=f"{node.plan.name} containerd socket",
        timeout_s=CONTAINERD_READY_S,
        process=node.containerd,
    )


def import_images(node: Node, image_list: list[images.Image]) -> None:
    for image in image_list:
        images.import_into(image, CONTAINERD_SOCKET, enter=node.ns.enter(net=False, pid=False))


def start_kubelet(node: Node, ledger: Ledger, keys: pki.Pki, server: str, cgroup_root: str, cluster_dns: str) -> None:
    plan, folder = node.plan, node.folder
    client = keys.issue(f"node-{plan.name}", f"system:node:{plan.name}", "system:nodes")
    serving = keys.issue(f"node-{plan.name}-serving", plan.name, server=True, ips=(plan.ip,), dns=(plan.name,))
    (folder / "kubeconfig").write_text(kubeconfig(server, keys.ca_cert, *client, f"system:node:{plan.name}"))
    (folder / "kubelet.json").write_text(json.dumps(kubelet_config(node, keys, serving, cgroup_root, cluster_dns), indent=2))
    argv = [
        str(tools.ensure_built(tools.KUBELET)),
        f"--config={folder / 'kubelet.json'}",
        # --root-dir stays /var/lib/kubelet: the node's own (its /var/lib overlay), and short enough
        # for the kubelet's unix sockets (pod-resources, device plugins).
        f"--kubeconfig={folder / 'kubeconfig'}",
        f"--hostname-override={plan.name}",
        f"--node-ip={plan.ip}",
        "--v=1",
    ]
    if plan.kubelet_labels:  # the kubelet's own kubernetes.io/hostname (its --hostname-override) yields to these
        argv.append("--node-labels=" + ",".join(f"{k}={v}" for k, v in plan.kubelet_labels))
    node.kubelet_started = time.monotonic()
    node.kubelet = node.ns.start("kubelet", argv, folder / "kubelet.log", ledger)


def start_kube_proxy(node: Node, ledger: Ledger, proxy_kubeconfig: Path, cluster_cidr: str) -> None:
    argv = [
        str(tools.ensure_built(tools.KUBE_PROXY)),
        f"--kubeconfig={proxy_kubeconfig}",
        f"--hostname-override={node.plan.name}",
        "--proxy-mode=iptables",
        f"--cluster-cidr={cluster_cidr}",
        # conntrack's table size and timeouts are global sysctls: leave them alone.
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0s",
        "--conntrack-tcp-timeout-close-wait=0s",
        "--metrics-bind-address=127.0.0.1:10249",
        "--v=1",
    ]
    node.kube_proxy = node.ns.start("kube-proxy", argv, node.folder / "kube-proxy.log", ledger)


def start_device_plugin(node: Node, ledger: Ledger) -> None:
    """The GPU device plugin (lab.nodes.gpu_plugin) in the node: registers nvidia.com/gpu with its
    kubelet and watches NVML through the interposer driven by the node's toggle.

    The toggle is made first, switched off: the interposer maps it when it loads, and a file that is
    not there then is never read."""
    from lab.nodes import gpu_plugin

    node.toggle_file.parent.mkdir(parents=True, exist_ok=True)
    toggle.write(node.toggle_file, toggle.Toggle(on=False))
    # Owned as the shim image's install.sh leaves it on a real node: the toggle-off pod (cleanup-dgd,
    # the janitor) runs as the steps image's user and must write it; a root-owned one refuses it.
    os.chown(node.toggle_file, TOGGLE_UID, TOGGLE_UID)
    setting = [f"{key}={value}" for key, value in gpu_plugin.environment(TOGGLE_FILE).items()]
    # Through env(1): nsenter itself must not load the interposer.
    argv = ["env", *setting, str(gpu_plugin.ensure_built())]
    node.device_plugin = node.ns.start("deviceplugin", argv, node.folder / "deviceplugin.log", ledger)
