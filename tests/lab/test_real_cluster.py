"""The real lab cluster (lab.nodes): real kubelets on real per-node namespaces, real containers.

One cluster for the module (gpu-0 and cpu-0, CoreDNS); the host must be unchanged after it is gone,
and after a SIGKILLed `python -m lab.nodes up` plus `down`. Needs root (the nodes are namespaces,
cgroups and mounts), the Debian node packages (`make node-packages`) and the tools (built on first use).
Figures (`node_ready_s`, `pod_start_s`) are printed, not asserted: speed goes to bench/.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.images import build as images
from lab.nodes import cluster as real
from lab.processes import wait_until
from lab.rest import ApiError, Rest
from tests.lab import host_snapshot

NS = "realtest"
POD_TIMEOUT_S = 120


def _cgroup_prefix(folder: Path) -> str:
    return f"faultflow-{real.RealCluster(folder, []).lab_id}-"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real") / "lab"
    before = host_snapshot.snapshot(folder, _cgroup_prefix(folder))
    lab = real.RealCluster(folder, real.plan_nodes(gpu_nodes=1, cpu_nodes=1), extra_images=(images.ensure_debian,)).start()
    lab.host_before = before  # the last test compares the host after stop() with this
    print(f"\nfigures: {real.figures_line(lab.figures)}")
    try:
        yield lab
    finally:
        lab.stop()
        shutil.rmtree(folder, ignore_errors=True)  # each node's image store is hundreds of MB


def _rest(lab) -> Rest:
    return lab.rest()


def _namespace(rest: Rest) -> None:
    try:
        rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    except ApiError as err:
        if err.status != 409:
            raise
    # Pod admission needs the namespace's default ServiceAccount, which kube-controller-manager makes.
    wait_until(lambda: rest.get_or_none(f"/api/v1/namespaces/{NS}/serviceaccounts/default"), what="default ServiceAccount", timeout_s=60)


def _pod(name: str, node: str, command: str, **spec) -> dict:
    container = {"name": "main", "image": "localhost/busybox:1.35", "imagePullPolicy": "Never", "command": ["/bin/sh", "-c", command]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
            **spec,
        },
    }


def _run_pod(rest: Rest, body: dict, phase: str = "Succeeded") -> tuple[dict, float]:
    """Create the pod, wait for `phase`; returns it and create → Running-or-later seconds."""
    name = body["metadata"]["name"]
    created = time.monotonic()
    rest.post(f"/api/v1/namespaces/{NS}/pods", body)
    running_at: list[float] = []

    def done():
        pod = rest.get(f"/api/v1/namespaces/{NS}/pods/{name}")
        current = pod.get("status", {}).get("phase")
        if current in ("Running", "Succeeded", "Failed") and not running_at:
            running_at.append(time.monotonic())
        if current == "Failed" and phase != "Failed":
            states = [c.get("state") for c in pod["status"].get("containerStatuses", [])]
            raise AssertionError(f"pod {name} failed: {json.dumps(states)[:600]}\nlogs:\n{_logs(rest, name)[-2000:]}")
        return pod if current == phase else None

    pod = wait_until(done, what=f"pod {name} {phase}", timeout_s=POD_TIMEOUT_S, interval_s=0.1)
    return pod, running_at[0] - created


def _logs(rest: Rest, name: str) -> str:
    request = rest._request("GET", f"/api/v1/namespaces/{NS}/pods/{name}/log")
    import urllib.request

    with urllib.request.urlopen(request, context=rest.context, timeout=30) as reply:
        return reply.read().decode()


def test_nodes_register_as_themselves_and_are_ready(cluster):
    rest = cluster.rest()
    for name in ("gpu-0", "cpu-0"):
        node = rest.get(f"/api/v1/nodes/{name}")
        assert real.node_ready(rest, name)
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        assert any(a["address"] == cluster.nodes[name].plan.ip for a in node["status"]["addresses"])
    # NodeRestriction + Node authorizer: gpu-0's kubelet identity may not touch cpu-0.
    node_rest = Rest.with_client_cert(
        cluster.server,
        str(cluster.keys.ca_cert),
        str(cluster.keys.ca_cert.with_name("node-gpu-0.crt")),
        str(cluster.keys.ca_cert.with_name("node-gpu-0.key")),
    )
    assert _merge_patch(node_rest, "/api/v1/nodes/gpu-0", {"metadata": {"labels": {"faultflow.dev/t": "1"}}}) == 200
    assert _merge_patch(node_rest, "/api/v1/nodes/cpu-0", {"metadata": {"labels": {"faultflow.dev/t": "1"}}}) == 403
    # The Node authorizer: a node reads only the secrets its own pods use.
    assert node_rest.status("/api/v1/namespaces/kube-system/secrets") == 403


def _merge_patch(rest: Rest, path: str, body: dict) -> int:
    import urllib.error
    import urllib.request

    request = rest._request("PATCH", path, body, content_type="application/merge-patch+json")
    try:
        with urllib.request.urlopen(request, context=rest.context, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_pod_runs_on_a_real_node_and_its_logs_come_back_through_the_api_server(cluster):
    rest = cluster.rest()
    _namespace(rest)
    marker = f"hello-from-a-real-pod-{secrets.token_hex(4)}"
    pod, start_s = _run_pod(rest, _pod("hello", "gpu-0", f"echo {marker}; cat /proc/1/cmdline; echo; id -u"))
    print(f"pod_start_s: {start_s:.2f}")
    assert pod["spec"]["nodeName"] == "gpu-0"
    assert pod["status"]["podIP"].startswith("10.244.0.")
    logs = _logs(rest, "hello")
    assert marker in logs
    # Its own PID namespace: PID 1 of the container is its command, not the node's init.
    assert "/bin/sh" in logs.splitlines()[1]


def test_a_privileged_pod_writing_dev_kmsg_reaches_its_nodes_pty_not_the_hosts(cluster):
    rest = cluster.rest()
    _namespace(rest)
    marker = f"NVRM: Xid (PCI:0000:17:00): 79, faultflow-test-{secrets.token_hex(4)}"
    body = _pod(
        "kmsg",
        "gpu-0",
        f"printf '%s\\n' '{marker}' > /dev/kmsg",
        container={"securityContext": {"privileged": True}, "volumeMounts": [{"name": "kmsg", "mountPath": "/dev/kmsg"}]},
        volumes=[{"name": "kmsg", "hostPath": {"path": "/dev/kmsg", "type": "CharDevice"}}],
    )
    _run_pod(rest, body)
    wait_until(
        lambda: True if marker in cluster.nodes["gpu-0"].kmsg_log.read_text(errors="replace") else None,
        what="the marker on gpu-0's kernel-log pty",
        timeout_s=10,
    )
    assert marker not in cluster.nodes["cpu-0"].kmsg_log.read_text(errors="replace")
    assert marker not in _host_kmsg()


def _host_kmsg() -> str:
    """The machine's kernel log, read (never written): one record per read, until none is left."""
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    records = []
    try:
        while True:
            try:
                records.append(os.read(fd, 8192).decode(errors="replace"))
            except BlockingIOError:
                break
            except BrokenPipeError:  # a record overwritten while we read: skip it
                continue
    finally:
        os.close(fd)
    return "".join(records)


def test_a_host_pid_pod_sees_only_its_nodes_processes(cluster):
    rest = cluster.rest()
    _namespace(rest)
    body = _pod("hostpid", "gpu-0", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done", hostPID=True)
    _run_pod(rest, body)
    seen = _logs(rest, "hostpid")
    assert "kubelet" in seen and "containerd" in seen  # the node's own
    for elsewhere in ("kube-apiserver", "/etcd ", "-m pytest", "kube-controller-manager"):  # hub's, the host's
        assert elsewhere not in seen, f"{elsewhere} visible from a hostPID pod on gpu-0:\n{seen}"
    assert str(cluster.nodes["cpu-0"].folder) not in seen  # nor the other node's


def test_a_gpu_pod_lands_on_a_gpu_node_which_has_its_own_driver_tree_and_toggle_dir(cluster):
    rest = cluster.rest()
    _namespace(rest)
    toggle = f"faultflow-toggle-{secrets.token_hex(4)}"
    body = _pod(
        "gpu",
        "gpu-0",
        f"cat /driver/nvidia/gpus/*/information | grep -E 'Bus Location|Device Minor'; "
        f"echo on > /var/lib/faultflow/{toggle}; echo visible=$NVIDIA_VISIBLE_DEVICES",
        container={
            "resources": {"limits": {"nvidia.com/gpu": "2"}},
            "volumeMounts": [
                {"name": "driver", "mountPath": "/driver", "readOnly": True},
                {"name": "toggle", "mountPath": "/var/lib/faultflow"},
            ],
        },
        volumes=[
            {"name": "driver", "hostPath": {"path": "/proc/driver", "type": "Directory"}},
            {"name": "toggle", "hostPath": {"path": "/var/lib/faultflow", "type": "DirectoryOrCreate"}},
        ],
    )
    del body["spec"]["nodeSelector"]  # the scheduler places it: only gpu-0 has GPUs
    body["spec"]["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    pod, _ = _run_pod(rest, body)
    assert pod["spec"]["nodeName"] == "gpu-0"
    logs = _logs(rest, "gpu")
    assert logs.count("Device Minor") == 8 and "Bus Location: \t 00000000:17:00.0" in logs
    # The device plugin allocated two of gpu-0's GPUs by UUID, as NVIDIA's plugin does.
    visible = next(line for line in logs.splitlines() if line.startswith("visible="))[len("visible=") :].split(",")
    assert len(set(visible)) == 2 and all(uuid.startswith("GPU-") for uuid in visible)
    # The hostPath is the node's own /var/lib: the file is in gpu-0's overlay, not on the machine.
    assert (cluster.nodes["gpu-0"].folder / "varlib-upper" / "faultflow" / toggle).read_text() == "on\n"
    assert not Path("/var/lib/faultflow", toggle).exists()
    assert rest.get("/api/v1/nodes/cpu-0")["status"]["allocatable"].get("nvidia.com/gpu") is None


def test_a_service_name_resolves_through_coredns_across_nodes(cluster):
    rest = cluster.rest()
    _namespace(rest)
    server = _pod(
        "web",
        "gpu-0",
        "mkdir -p /www && echo served-by-web > /www/index.html && httpd -f -p 8080 -h /www",
        container={"ports": [{"containerPort": 8080}]},
    )
    server["metadata"]["labels"] = {"app": "web"}
    _run_pod(rest, server, phase="Running")
    rest.post(
        f"/api/v1/namespaces/{NS}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_until(lambda: True if _coredns_ready(rest) else None, what="CoreDNS ready", timeout_s=POD_TIMEOUT_S)
    # From the other node, with glibc's resolver (the Debian image): the name through CoreDNS and the
    # pod's search path, the ClusterIP through kube-proxy, then the pod on the other node.
    script = (
        "import socket, sys, time, urllib.request\n"
        "for _ in range(50):\n"
        "    try:\n"
        "        ip = socket.gethostbyname('web')\n"
        "        print('resolved', ip)\n"
        "        print(urllib.request.urlopen('http://web/', timeout=2).read().decode())\n"
        "        sys.exit(0)\n"
        "    except OSError as exc:\n"
        "        print(exc)\n"
        "        time.sleep(0.2)\n"
        "sys.exit(1)\n"
    )
    client = _pod("client", "cpu-0", "", container={"image": images.DEBIAN.ref, "command": ["python3", "-c", script]})
    _run_pod(rest, client)
    logs = _logs(rest, "client")
    service_ip = rest.get(f"/api/v1/namespaces/{NS}/services/web")["spec"]["clusterIP"]
    assert f"resolved {service_ip}" in logs and "served-by-web" in logs


def _coredns_ready(rest: Rest) -> bool:
    pods = rest.get("/api/v1/namespaces/kube-system/pods?labelSelector=k8s-app%3Dkube-dns")["items"]
    return any(c["type"] == "Ready" and c["status"] == "True" for p in pods for c in p.get("status", {}).get("conditions", []))


def test_the_nvsentinel_simulator_quarantines_the_node_whose_kernel_log_got_an_xid(cluster):
    """The first piece of the lab's world on real nodes: a real privileged pod writes an XID line to
    gpu-0's /dev/kmsg; the NVSentinel simulator, reading gpu-0's kernel log, quarantines gpu-0 (so it
    runs after the tests that schedule onto gpu-0)."""
    from lab.layout import LabDir
    from lab.nvsentinel_simulator import NvsentinelConfig, NvsentinelSimulator
    from steps.gpu import nvsentinel as nv
    from steps.gpu.kmsg import xid_line
    from steps.kube.client import connect

    rest = cluster.rest()
    _namespace(rest)
    config = NvsentinelConfig(detect_delay_s=0, quarantine_delay_s=0, drain_delay_s=0)
    # Its circuit breaker (the chart's ConfigMap); its monitor pods' presence is not simulated here.
    for path, body in (
        ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.namespace}}),
        (
            f"/api/v1/namespaces/{config.namespace}/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": nv.CIRCUIT_BREAKER_CONFIGMAP}, "data": {"status": "CLOSED"}},
        ),
    ):
        rest.post(path, body)
    simulator = NvsentinelSimulator(
        connect(str(cluster.kubeconfig)), LabDir(cluster.folder), ["gpu-0"], config, node_paths=cluster.node_paths
    ).start()
    try:
        line = base64.b64encode(xid_line(79, "0000:17:00", 4242, "python3")).decode()
        body = _pod(
            "xid",
            "gpu-0",
            f"echo {line} | base64 -d > /dev/kmsg",
            container={"securityContext": {"privileged": True}, "volumeMounts": [{"name": "kmsg", "mountPath": "/dev/kmsg"}]},
            volumes=[{"name": "kmsg", "hostPath": {"path": "/dev/kmsg", "type": "CharDevice"}}],
        )
        _run_pod(rest, body)
        node = wait_until(
            lambda: n if nv.is_quarantined(n := rest.get("/api/v1/nodes/gpu-0")) else None,
            what="gpu-0 quarantined by the NVSentinel simulator",
            timeout_s=60,
        )
    finally:
        simulator.stop()
    assert node["spec"].get("unschedulable") is True
    condition = next(c for c in node["status"]["conditions"] if c["type"] == nv.XID_CONDITION)
    assert condition["status"] == "True" and "ErrorCode:79" in condition["message"]
    assert not nv.is_quarantined(rest.get("/api/v1/nodes/cpu-0"))


def test_the_host_is_unchanged_after_up_and_down(cluster):
    """Last of the module's cluster tests: stops the cluster and compares the host with before `up`."""
    cluster.stop()
    after = host_snapshot.snapshot(cluster.folder, _cgroup_prefix(cluster.folder))
    assert host_snapshot.diff(cluster.host_before, after) == {}


def test_down_after_a_sigkilled_up_removes_everything_it_made(tmp_path):
    folder = tmp_path / "lab"
    before = host_snapshot.snapshot(folder, _cgroup_prefix(folder))
    up = subprocess.Popen(
        [sys.executable, "-m", "lab.nodes", "up", "--dir", str(folder), "--gpu-nodes", "1", "--no-coredns"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in up.stdout:
        lines.append(line)
        if line.startswith("figures:"):
            break
    assert lines and lines[-1].startswith("figures:"), "".join(lines)[-2000:]
    print(lines[-1].strip())
    made = real.ledger_of(folder)
    assert made.live_pids() and list(Path("/sys/fs/cgroup").glob(f"*/{_cgroup_prefix(folder)}*"))
    up.send_signal(signal.SIGKILL)
    up.wait()
    down = subprocess.run([sys.executable, "-m", "lab.nodes", "down", "--dir", str(folder)], capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert not folder.exists()
    assert host_snapshot.diff(before, host_snapshot.snapshot(folder, _cgroup_prefix(folder))) == {}
