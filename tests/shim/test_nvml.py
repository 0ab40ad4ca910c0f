"""The NVML interposer makes real NVML consumers see each XID as the catalogue says, driven by the same
node toggle as the CUDA shim.

Consumers: `nvml-health`, a Go program on go-nvml (pinned, from the Go module proxy) doing what the
NVIDIA device plugin's health check does, and a Python ctypes consumer of the query paths
(lab/nvml_query.py). Underneath is the NVML simulator (lab/native/nvml_simulator.c): no driver runs here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab.nvml_consumer import ensure_built
from steps.gpu.xids import NVML_EVENT_TYPES, SEED_XIDS, lookup
from tests.shim.live import shim

IGNORED_BY_DEVICE_PLUGIN = {13, 31, 43, 45, 68, 109}
NO_INSTANCE = str(0xFFFFFFFF)
GPU_IS_LOST = "15"
TIMEOUT = "10"
ECC_XIDS = (48, 63, 64, 94, 95)
EVENT_XIDS = tuple(sorted({*SEED_XIDS, 13, 31, 63, 92, 109}))


@pytest.fixture(scope="session")
def nvml_health() -> str:
    return str(ensure_built())


def environment(native, toggle=None, preload=True, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "FAULTFLOW_", "SIM_", "LD_PRELOAD"))}
    env["LD_LIBRARY_PATH"] = str(native.nvml_dir)
    if preload:
        env["LD_PRELOAD"] = str(native.nvml_shim)
    if toggle is not None:
        env["FAULTFLOW_TOGGLE_FILE"] = str(toggle)
    env.update(extra)
    return env


def fields(line: str) -> dict[str, str]:
    return dict(token.partition("=")[::2] for token in line.split())


class Live:
    """A long-lived consumer driven one line at a time, so the toggle can change between its calls."""

    def __init__(self, argv: list[str], env: dict[str, str], header_until: str | None = None):
        self.process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.header = []
        while header_until is not None:
            line = self.process.stdout.readline().strip()
            assert line, self.close()
            if line.startswith(header_until):
                break
            self.header.append(line)

    def ask(self, line: str) -> dict[str, str]:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, self.close()
        return fields(answer)

    def close(self) -> str:
        self.process.stdin.close()
        self.process.wait(timeout=30)
        return self.process.stderr.read()


def health(nvml_health, env, devices=2) -> Live:
    live = Live([nvml_health, "-timeout-ms", "20"], env, header_until="ready ")
    assert len(live.header) == devices
    for line in live.header:
        assert line.startswith("device ") and fields(line)["ret"] == "0", line
    return live


def uuid_of(live: Live, index: int) -> str:
    return fields(live.header[index])["uuid"]


def expected_events(xid: int, uuid: str) -> list[dict[str, str]]:
    """What the device plugin's health check sees of one injection, per the catalogue."""
    nvml = lookup(xid).nvml
    out = []
    for name in nvml.events:
        is_xid = name == "XidCriticalError"
        if not is_xid:
            verdict = "skipped"
        elif xid in IGNORED_BY_DEVICE_PLUGIN:
            verdict = "ignored"
        elif nvml.gpu_lost:
            verdict = "all-unhealthy"  # the event's device answers GPU_IS_LOST to GetUUID: the plugin gives up on all
        else:
            verdict = "unhealthy"
        out.append({
            "wait": "0", "type": hex(NVML_EVENT_TYPES[name]), "xid": str(xid if is_xid else 0),
            "uuid": f"error-{GPU_IS_LOST}" if nvml.gpu_lost and verdict != "ignored" else uuid,
            "gi": NO_INSTANCE, "ci": NO_INSTANCE, "verdict": verdict,
        })  # fmt: skip
    return out


@pytest.mark.parametrize("xid", EVENT_XIDS)
def test_health_check_sees_the_catalogue_events_once_per_injection(native, nvml_health, tmp_path, xid):
    toggle = tmp_path / "toggle"
    shim("off", "--create", "--file", toggle)
    live = health(nvml_health, environment(native, toggle))
    target = uuid_of(live, 1)
    assert live.ask("20")["verdict"] == "timeout"

    shim("on", "--file", toggle, "--xid", xid, "--gpu", 1)
    expected = expected_events(xid, target)
    seen = [live.ask("20") for _ in expected]
    assert seen == expected
    after = live.ask("20")  # nothing more for this injection
    if lookup(xid).nvml.gpu_lost:
        assert after == {"wait": GPU_IS_LOST, "verdict": "all-unhealthy"}
    else:
        assert after == {"wait": TIMEOUT, "verdict": "timeout"}

    shim("off", "--file", toggle)
    assert live.ask("20")["verdict"] == "timeout"
    shim("on", "--file", toggle, "--xid", xid, "--gpu", 1)  # a new injection: delivered again
    assert [live.ask("20") for _ in expected] == expected
    stderr = live.close()
    assert f"XID {xid}" in stderr


def test_the_simulator_enumerates_a_driver_tree_and_an_injection_on_its_bus_reaches_that_gpu(native, nvml_health, tmp_path):
    """The lab's GPU nodes: NVML's devices are the driver tree's GPUs (UUID, lower-case bus id), so a
    toggle naming a bus from the tree reaches the GPU the tree lists there."""
    from lab.gpu_nodes import bus_id, gpu_uuid, information

    tree = tmp_path / "gpus"
    gpus = [(bus_id(10, gpu), gpu_uuid("gpu-x", gpu)) for gpu in range(3)]
    for gpu, (bus, _) in enumerate(gpus):
        (tree / bus).mkdir(parents=True)
        (tree / bus / "information").write_text(information("gpu-x", gpu, bus))
    toggle = tmp_path / "toggle"
    shim("off", "--create", "--file", toggle)  # `shim off` alone never creates a toggle
    live = health(nvml_health, environment(native, toggle, SIM_NVML_DRIVER_TREE=str(tree), SIM_NVML_DEVICES="7"), devices=3)
    seen = [fields(line) for line in live.header]
    assert [(d["bus"].lower(), d["uuid"]) for d in seen] == gpus
    shim("on", "--file", toggle, "--xid", 74, "--bus", gpus[2][0])
    answer = live.ask("20")
    assert (answer["wait"], answer["xid"], answer["uuid"], answer["verdict"]) == ("0", "74", gpus[2][1], "unhealthy")
    assert live.ask("20")["verdict"] == "timeout"
    live.close()


def test_event_targets_the_gpu_by_pci_bus_id(native, nvml_health, tmp_path):
    toggle = tmp_path / "toggle"
    shim("off", "--create", "--file", toggle)
    live = health(nvml_health, environment(native, toggle))
    device0 = fields(live.header[0])
    shim("on", "--file", toggle, "--xid", 48, "--gpu", 1, "--bus", device0["bus"].lower().replace("00000000:", "0000:"))
    assert live.ask("20")["uuid"] == device0["uuid"]  # the bus id wins over the index
    assert live.ask("20")["uuid"] == device0["uuid"]  # its DoubleBitEccError event
    assert live.ask("20")["verdict"] == "timeout"  # and nothing for device 1
    live.close()


def test_every_device_when_no_gpu_is_named(native, nvml_health, tmp_path):
    toggle = tmp_path / "toggle"
    shim("off", "--create", "--file", toggle)
    live = health(nvml_health, environment(native, toggle))
    shim("on", "--file", toggle, "--xid", 74)
    uuids = {live.ask("20")["uuid"] for _ in range(2)}
    assert uuids == {uuid_of(live, 0), uuid_of(live, 1)}
    assert live.ask("20")["verdict"] == "timeout"
    live.close()


def test_a_fault_switched_on_during_a_long_wait_is_delivered_in_that_wait(native, nvml_health, tmp_path):
    """The device plugin waits 5 s at a time: the interposer cuts the wait into slices and looks at
    the toggle between them, as the driver wakes a waiter when an XID arrives."""
    toggle = tmp_path / "toggle"
    shim("off", "--create", "--file", toggle)
    live = health(nvml_health, environment(native, toggle))
    live.process.stdin.write("30000\n")  # one wait of 30 s
    live.process.stdin.flush()
    shim("on", "--file", toggle, "--xid", 79, "--gpu", 0)
    answer = fields(live.process.stdout.readline())
    assert answer["xid"] == "79" and answer["wait"] == "0"
    live.close()


@pytest.mark.parametrize("sim_xid", ("31:1", "74:0"))
def test_passthrough_is_what_the_library_says(native, nvml_health, tmp_path, sim_xid):
    """With the toggle off the consumer's whole conversation with NVML is unchanged: same answers,
    and the same calls reach the library (the simulator's own XID event included)."""
    toggle = tmp_path / "toggle"
    shim("off", "--create", "--file", toggle)
    runs = []
    for preload in (False, True):
        env = environment(native, toggle, preload=preload, SIM_NVML_XID=sim_xid, SIM_NVML_LOG="1")
        done = subprocess.run([nvml_health, "-waits", "3", "-timeout-ms", "10"], env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        calls = [line for line in done.stderr.splitlines() if line.startswith("[nvml-sim]")]
        runs.append((done.stdout, calls))
    assert runs[0] == runs[1]
    assert f"xid={sim_xid.split(':')[0]}" in runs[0][0]


def query(native, toggle, ops, **extra) -> dict[str, dict[str, str]]:
    env = environment(native, toggle, **extra)
    done = subprocess.run([sys.executable, "-m", "lab.nvml_query", *ops], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = {}
    for line in done.stdout.splitlines():
        op, _, rest = line.partition("=")
        value, *extras = rest.split()
        out[op] = {"result": value, **fields(" ".join(extras))}
    return out


ECC_OPS = ["init", "ecc:0", "ecc:1", "ecc_corrected:1", "remapped:0", "remapped:1", "retired:0", "retired:1", "retired_pending:1"]


@pytest.mark.parametrize("arch", ("ampere", "volta"))
@pytest.mark.parametrize("xid", ECC_XIDS)
def test_ecc_state_follows_the_catalogue(native, tmp_path, arch, xid):
    toggle = tmp_path / "toggle"
    shim("on", "--file", toggle, "--xid", xid, "--gpu", 1)
    nvml = lookup(xid).nvml
    got = query(native, toggle, ECC_OPS, SIM_NVML_ARCH=arch)
    ecc = str(int(nvml.uncorrectable_ecc))
    assert got["ecc:1"] == {"result": "0", "volatile": ecc, "aggregate": ecc}
    assert got["ecc:0"] == {"result": "0", "volatile": "0", "aggregate": "0"}  # not the targeted GPU
    assert got["ecc_corrected:1"] == {"result": "0", "volatile": "0", "aggregate": "0"}  # only uncorrectable ones
    if arch == "ampere":  # row remapping; no page retirement
        pending, failure = str(int(nvml.remap == "pending")), str(int(nvml.remap == "failure"))
        assert got["remapped:1"] == {"result": "0", "corr": "0", "unc": pending, "pending": pending, "failure": failure}
        assert got["remapped:0"] == {"result": "0", "corr": "0", "unc": "0", "pending": "0", "failure": "0"}
        assert got["retired:1"]["result"] == "3" and got["retired_pending:1"]["result"] == "3"  # NOT_SUPPORTED stays
    else:  # page retirement; no row remapping
        assert got["remapped:1"]["result"] == "3"
        retired = int(nvml.retire_page)
        assert got["retired:1"]["result"] == "0" and got["retired:1"]["count"] == str(retired)
        if retired:
            assert got["retired:1"]["first"] == "0x7fdf0de80"
        assert got["retired_pending:1"] == {"result": "0", "pending": str(retired)}
        assert got["retired:0"] == {"result": "0", "count": "0"}


def test_retired_page_size_query_keeps_nvmls_contract(native, tmp_path):
    toggle = tmp_path / "toggle"
    shim("on", "--file", toggle, "--xid", 48, "--gpu", 1)
    got = query(native, toggle, ["init", "retired_size:1"], SIM_NVML_ARCH="volta")
    assert got["retired_size:1"] == {"result": "7", "count": "1"}  # INSUFFICIENT_SIZE, and how many there are


LOST_OPS = ["init", "count", "handle:0", "handle:1", "uuid:0", "uuid:1", "pci:1", "memory:1", "temp:1", "ecc:1",
            "remapped:1", "handle_uuid:1", "handle_bus:00000000:3B:00.0"]  # fmt: skip


def test_a_lost_gpu_answers_gpu_is_lost_on_every_query(native, tmp_path):
    toggle = tmp_path / "toggle"
    shim("off", "--create", "--file", toggle)
    env = environment(native, toggle, SIM_NVML_LOG="1")
    live = Live([sys.executable, "-m", "lab.nvml_query", "-"], env)
    assert live.ask("init") == {"init": "0"}  # handles taken before the fault, as a long-lived consumer has them
    shim("on", "--file", toggle, "--xid", 79, "--gpu", 1)
    answers = {op: live.ask(op)[op] for op in LOST_OPS[1:]}
    assert answers == {
        "count": "0", "handle:0": "0", "handle:1": GPU_IS_LOST, "uuid:0": "0", "uuid:1": GPU_IS_LOST,
        "pci:1": GPU_IS_LOST, "memory:1": GPU_IS_LOST, "temp:1": GPU_IS_LOST, "ecc:1": GPU_IS_LOST,
        "remapped:1": GPU_IS_LOST, "handle_uuid:1": GPU_IS_LOST, "handle_bus:00000000:3B:00.0": GPU_IS_LOST,
    }  # fmt: skip
    shim("off", "--file", toggle)
    assert live.ask("uuid:1")["uuid:1"] == "0"  # reset: the device answers again
    stderr = live.close()
    # A lost GPU's calls are answered by the interposer: the library is never asked (only asked here
    # after the fault, these would show up otherwise).
    assert "[nvml-sim] nvmlDeviceGetMemoryInfo" not in stderr and "[nvml-sim] nvmlDeviceGetTemperature" not in stderr
    assert "[nvml-sim] nvmlDeviceGetCount_v2" in stderr  # while the library is, for what is not lost


@pytest.mark.parametrize("xid", (43, 48, 74, 94))
def test_queries_pass_through_for_xids_that_do_not_lose_the_gpu(native, tmp_path, xid):
    ops = ["init", "count", "uuid:1", "pci:1", "memory:1", "temp:1", "handle:1", "handle_bus:00000000:3B:00.0"]
    off, on = tmp_path / "off", tmp_path / "on"
    shim("off", "--create", "--file", off)
    shim("on", "--file", on, "--xid", xid, "--gpu", 1)
    assert query(native, on, ops) == query(native, off, ops) == query(native, off, ops, LD_PRELOAD="")


@pytest.mark.parametrize("order", ("cuda-first", "nvml-first"))
def test_both_libraries_in_one_process(native, tmp_path, order):
    """A process that preloads both (a CUDA application that also reads NVML): each dlsym hook forwards
    to the next, so lookups on libnvidia-ml's and libcuda's handles both reach their wrappers."""
    toggle = tmp_path / "toggle"
    shim("on", "--file", toggle, "--xid", 48, "--gpu", 1)
    libs = [native.shim, native.nvml_shim] if order == "cuda-first" else [native.nvml_shim, native.shim]
    preload = " ".join(map(str, libs))
    got = query(native, toggle, ["init", "ecc:1"], LD_PRELOAD=preload)
    assert got["ecc:1"] == {"result": "0", "volatile": "1", "aggregate": "1"}
    every_gpu = tmp_path / "every-gpu"
    shim("on", "--file", every_gpu, "--xid", 48)
    env = environment(native, every_gpu, LD_PRELOAD=preload, LD_LIBRARY_PATH=str(native.driver_dir))
    done = subprocess.run([str(native.binary("driver_consumer_proc")), "init", "alloc"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.stdout.split() == ["init=214", "alloc=214"], done.stdout + done.stderr


def test_start_up_marker_names_the_nvml_library(native, tmp_path):
    toggle = tmp_path / "toggle"
    shim("off", "--create", "--file", toggle)
    done = subprocess.run([sys.executable, "-m", "lab.nvml_query", "init"], env=environment(native, toggle),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "faultflow-nvml: loaded version=" in done.stderr and f"toggle={toggle} (mapped)" in done.stderr
