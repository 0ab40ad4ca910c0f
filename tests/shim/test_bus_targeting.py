"""Issue 15 item 4: a fault names its GPU by PCI bus id, and the CUDA shim fails only the calls on the
device the driver reports with that bus id. A pod holding host GPU 3 sees it as CUDA device 0
(CUDA_VISIBLE_DEVICES, as the device plugin hands it out), so comparing the host's device minor with
the process's ordinal would hit the wrong GPU or none. The driver simulator numbers visible devices
and answers cuDeviceGetPCIBusId as the real driver does, with the bus ids of the node's
/proc/driver/nvidia/gpus tree, which inject-xid reads to name the XID's GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from steps.gpu import toggle as toggle_record
from steps.gpu.xids import lookup
from tests.cli import faultflow
from tests.shim.live import LiveConsumer, shim
from tests.steps.test_gpus import make_proc

# The NVML simulator's bus ids (nvml_simulator.c): GPU i at bus 0x18 + 0x23 * i.
NVML_SIM_BUS = {i: f"00000000:{0x18 + 0x23 * i:02X}:00.0" for i in range(4)}
LOST = lookup(79).effect.call_error


def pod_with_host_gpu_3(native, toggle, **env) -> LiveConsumer:
    consumer = LiveConsumer(native, toggle, {"CUDA_VISIBLE_DEVICES": "3", **env})
    assert consumer.call("init") == 0 and consumer.call("device:0") == 0
    return consumer


@pytest.mark.parametrize("named,fails", ((3, True), (0, False)))
def test_the_fault_follows_the_bus_id_not_the_ordinal(native, toggle, named, fails):
    pod = pod_with_host_gpu_3(native, toggle, SIM_DEVICES="4")
    try:
        shim("on", "--file", toggle, "--xid", 79, "--bus", NVML_SIM_BUS[named])
        expected = LOST if fails else 0
        assert [pod.call(op) for op in ("alloc", "launch", "sync", "device:0")] == [expected] * 4
        shim("off", "--file", toggle)
        assert pod.call("alloc") == 0
    finally:
        pod.close()


def test_without_a_bus_the_ordinal_still_targets(native, toggle):
    """A record without bus= (version 1, or `shim on --gpu`) keeps its meaning: the process's ordinal."""
    pod = pod_with_host_gpu_3(native, toggle, SIM_DEVICES="4")
    try:
        shim("on", "--file", toggle, "--xid", 79, "--gpu", 0)
        assert pod.call("alloc") == LOST
        shim("on", "--file", toggle, "--xid", 79, "--gpu", 3)
        assert pod.call("alloc") == 0
    finally:
        pod.close()


def simulator_bus_ids(native, env: dict) -> dict[int, str]:
    """What the driver simulator answers cuDeviceGetPCIBusId for each visible device (no shim)."""
    done = subprocess.run(
        [str(native.binary("driver_consumer_proc")), "init", "count", *(f"bus:{i}" for i in range(4))],
        env={"LD_LIBRARY_PATH": str(native.driver_dir), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    answers = {}
    for line in done.stdout.splitlines():
        op, _, rest = line.partition("=")
        if op.startswith("bus:") and rest.startswith("0 "):
            answers[int(op[4:])] = rest.split("id=")[1]
    return answers


def same_bus(a: str, b: str) -> bool:
    return [int(part, 16) for part in a.replace(".", ":").split(":")] == [int(part, 16) for part in b.replace(".", ":").split(":")]


def test_the_driver_simulator_agrees_with_the_nvml_simulator(native):
    answers = simulator_bus_ids(native, {"SIM_DEVICES": "4"})
    done = subprocess.run(
        [sys.executable, "-m", "lab.nvml_query", "init", *(f"pci:{i}" for i in range(4))],
        env={**os.environ, "LD_LIBRARY_PATH": str(native.nvml_dir), "SIM_NVML_DEVICES": "4"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    nvml = [line.split("bus=")[1].split()[0] for line in done.stdout.splitlines() if line.startswith("pci:")]
    assert len(nvml) == 4, done.stdout + done.stderr
    assert all(same_bus(answers[i], nvml[i]) and same_bus(nvml[i], NVML_SIM_BUS[i]) for i in range(4)), (answers, nvml)


def test_visible_devices_renumber_the_host_gpus(native, tmp_path):
    proc = make_proc(
        tmp_path / "proc", [("00000002:17:00.0", 0), ("00000002:27:00.0", 1), ("00000002:37:00.0", 2), ("00000002:47:00.0", 3)]
    )
    answers = simulator_bus_ids(native, {"SIM_PROC_ROOT": str(proc), "CUDA_VISIBLE_DEVICES": "3,1"})
    assert set(answers) == {0, 1}
    assert same_bus(answers[0], "00000002:47:00.0") and same_bus(answers[1], "00000002:27:00.0")


@pytest.mark.parametrize("xid_gpu,fails", ((3, True), (0, False)))
def test_inject_xid_faults_the_gpu_its_line_names(native, tmp_path, xid_gpu, fails):
    """inject-xid --gpu 3 on a node whose /proc tree lists four GPUs: the toggle carries GPU 3's bus id
    from that tree, and a pod holding host GPU 3 (its device 0) fails; an XID on GPU 0 spares it."""
    buses = [f"00000001:{0x17 + 0x10 * gpu:02x}:00.0" for gpu in range(4)]  # the lab's layout (lab.gpu_nodes)
    proc = make_proc(tmp_path / "proc", [(bus, gpu) for gpu, bus in enumerate(buses)])
    toggle_dir = tmp_path / "toggle-dir"
    toggle_dir.mkdir()
    toggle = toggle_dir / toggle_record.FILE_NAME
    shim("off", "--create", "--file", toggle)
    kmsg = tmp_path / "kmsg"
    kmsg.write_bytes(b"")
    pod = pod_with_host_gpu_3(native, toggle, SIM_PROC_ROOT=str(proc))
    try:
        done = faultflow(
            "step", "inject-xid", "--xid", "79", "--gpu", str(xid_gpu), "--kmsg-path", str(kmsg), "--proc-root", str(proc),
            "--toggle-dir", str(toggle_dir), "--gpu-metadata", str(tmp_path / "none.json"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        event = json.loads(done.stdout.splitlines()[0])
        assert event["bus"] == buses[xid_gpu] == toggle_record.read(toggle).bus
        assert pod.call("alloc") == (LOST if fails else 0)
    finally:
        pod.close()
