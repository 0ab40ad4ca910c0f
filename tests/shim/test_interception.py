"""The shim makes real consumers see each XID's catalogue error, on every path CUDA code reaches the driver.

Consumers: C programs that reach libcuda like cudart (dlopen + cuGetProcAddress) and by linking it,
C programs built against the real cudart 12 and 13 from PyPI (shared and static), and Python ctypes.
Underneath is the driver simulator (lab/native/driver_simulator.c): no GPU driver runs here.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from steps.gpu.xids import SEED_XIDS, lookup

DRIVER_CONSUMERS = ("driver_consumer_proc", "driver_consumer_linked")
PER_CALL_OPS = ("alloc", "launch", "launch_ptsz", "memcpy_ptds", "sync")
RUNTIME_VERSIONS = ("cu12", "cu13")
SIMULATED_INIT_FAILURE = "100"  # what the simulator's cuInit returns for the cudart consumers


def fault_env(xid: int) -> dict[str, str]:
    return {"CUDA_FAULT_INJECTION_ENABLED": "1", "CUDA_XID_TYPE": str(xid), "SIM_LOG": "1"}


@pytest.mark.parametrize("consumer", DRIVER_CONSUMERS)
@pytest.mark.parametrize("xid", SEED_XIDS)
def test_driver_api_sees_catalogue_error(run_consumer, native, consumer, xid):
    entry = lookup(xid)
    result = run_consumer(consumer, ["init", "count", "device:0", *PER_CALL_OPS], preload=[native.shim], env=fault_env(xid))

    assert result.code("init") == entry.effect.init_error  # 0: the simulator's own success passes through
    assert result.code("count") == entry.effect.init_error
    for op in ("device:0", *PER_CALL_OPS):
        assert result.code(op) == entry.effect.call_error, op
    # A faulted call returns without calling the driver, as a dead GPU's driver would not run it.
    assert "[driver-sim] cuMemAlloc_v2" not in result.stderr
    assert "[driver-sim] cuLaunchKernel_ptsz" not in result.stderr


@pytest.mark.parametrize("version", RUNTIME_VERSIONS)
@pytest.mark.parametrize("xid", SEED_XIDS)
def test_shared_cudart_sees_catalogue_error(run_consumer, native, version, xid):
    entry = lookup(xid)
    result = run_consumer(
        f"runtime_consumer_{version}_shared",
        ["count", "malloc", "peek", "lasterror"],
        preload=[native.shim],
        env={**fault_env(xid), "SIM_INIT_RESULT": SIMULATED_INIT_FAILURE},
    )
    expected_count = entry.effect.init_error or int(SIMULATED_INIT_FAILURE)
    assert result.code("count") == expected_count
    assert result.code("malloc") == entry.effect.call_error
    # The injected error is also the (sticky) last error, as cudart reports a broken context.
    assert result.code("peek") == entry.effect.call_error
    assert result.code("lasterror") == entry.effect.call_error


@pytest.mark.parametrize("version", RUNTIME_VERSIONS)
@pytest.mark.parametrize("xid", SEED_XIDS)
def test_static_cudart_is_caught_through_cuGetProcAddress(run_consumer, native, version, xid):
    """A static cudart exports nothing to interpose: only its driver calls, fetched through
    cuGetProcAddress, can be reached. Its initialisation therefore shows the XID's init error; per-call
    runtime errors need a cudart that initialised, which no simulator can give (testinfra.md §1.6)."""
    entry = lookup(xid)
    result = run_consumer(
        f"runtime_consumer_{version}_static",
        ["count", "lasterror"],
        preload=[native.shim],
        env={**fault_env(xid), "SIM_INIT_RESULT": SIMULATED_INIT_FAILURE},
    )
    expected = entry.effect.init_error or int(SIMULATED_INIT_FAILURE)
    assert result.code("count") == expected
    assert result.code("lasterror") == expected
    if entry.effect.init_error:
        assert "[driver-sim] cuInit" not in result.stderr  # the wrapper answered, not the simulator


CTYPES_CONSUMER = textwrap.dedent(
    """
    import ctypes, sys
    cudart = ctypes.CDLL(sys.argv[1])          # RTLD_LOCAL: reached only through dlsym(handle, ...)
    driver = ctypes.CDLL("libcuda.so.1")
    ptr = ctypes.c_void_p()
    dptr = ctypes.c_ulonglong()
    print("malloc=%d" % cudart.cudaMalloc(ctypes.byref(ptr), 1 << 20))
    print("lasterror=%d" % cudart.cudaGetLastError())
    print("driver_init=%d" % driver.cuInit(0))
    print("driver_alloc=%d" % driver.cuMemAlloc_v2(ctypes.byref(dptr), 1 << 20))
    """
)


@pytest.mark.parametrize("xid", SEED_XIDS)
def test_python_ctypes_sees_catalogue_error(run_consumer, native, tmp_path, xid):
    entry = lookup(xid)
    script = tmp_path / "consumer.py"
    script.write_text(CTYPES_CONSUMER)
    cudart = native.cudart["cu12"] / "libcudart.so.12"
    result = run_consumer([sys.executable, str(script), str(cudart)], [], preload=[native.shim], env=fault_env(xid))
    assert result.returncode == 0, result.stderr
    assert result.code("malloc") == entry.effect.call_error
    assert result.code("lasterror") == entry.effect.call_error
    assert result.code("driver_init") == entry.effect.init_error
    assert result.code("driver_alloc") == entry.effect.call_error


@pytest.mark.parametrize("consumer", DRIVER_CONSUMERS)
def test_passthrough_returns_what_the_driver_returns(run_consumer, native, tmp_path, consumer):
    toggle = tmp_path / "toggle"
    toggle.write_bytes(b"0" + b" " * 62 + b"\n")
    ops = ["init", "count", "device:1", *PER_CALL_OPS]
    env = {"SIM_CALL_RESULT": "2", "FAULTFLOW_TOGGLE_FILE": str(toggle), "CUDA_XID_TYPE": "79"}
    direct = run_consumer(consumer, ops, env=env)
    shimmed = run_consumer(consumer, ops, preload=[native.shim], env=env)
    assert direct.values == shimmed.values
    assert shimmed.code("alloc") == 2  # the simulator's answer, not the shim's
    assert f"toggle={toggle} (mapped)" in shimmed.stderr


@pytest.mark.parametrize("version", RUNTIME_VERSIONS)
@pytest.mark.parametrize("linkage", ("shared", "static"))
@pytest.mark.parametrize("init_result", ("100", "34"))
def test_cudart_passthrough_is_unchanged(run_consumer, native, version, linkage, init_result):
    ops = ["count", "malloc", "lasterror"]
    env = {"SIM_INIT_RESULT": init_result}
    program = f"runtime_consumer_{version}_{linkage}"
    direct = run_consumer(program, ops, env=env)
    shimmed = run_consumer(program, ops, preload=[native.shim], env=env)
    assert direct.values == shimmed.values
    assert shimmed.code("count") == int(init_result)


def test_invalid_xid_in_environment_injects_nothing(run_consumer, native):
    result = run_consumer(
        "driver_consumer_proc",
        ["init", "alloc"],
        preload=[native.shim],
        env={"CUDA_FAULT_INJECTION_ENABLED": "1", "CUDA_XID_TYPE": "999"},
    )
    assert result.code("init") == 0 and result.code("alloc") == 0
    assert "CUDA_XID_TYPE=999 is not an XID 1-172" in result.stderr


def test_informational_xid_leaves_the_application_running(run_consumer, native):
    assert lookup(63).effect.call_error == 0  # remapping event: nothing for the application to see
    result = run_consumer("driver_consumer_proc", ["init", "alloc"], preload=[native.shim], env=fault_env(63))
    assert result.code("init") == 0 and result.code("alloc") == 0


def test_start_up_marker(run_consumer, native, tmp_path):
    missing = tmp_path / "absent"
    result = run_consumer("driver_consumer_proc", ["init"], preload=[native.shim], env={"FAULTFLOW_TOGGLE_FILE": str(missing)})
    first = result.stderr.splitlines()[0]
    assert first.startswith("faultflow-shim: loaded version=")
    assert f"toggle={missing} (missing)" in first
    quiet = run_consumer("driver_consumer_proc", ["init"], preload=[native.shim], env={"FAULTFLOW_SHIM_QUIET": "1"})
    assert "faultflow-shim" not in quiet.stderr


@pytest.mark.parametrize("order", ("shim-first", "shim-last"))
def test_another_interposer_keeps_working(run_consumer, native, order):
    other = native.binary("libother_interposer.so")
    preload = [native.shim, other] if order == "shim-first" else [other, native.shim]
    result = run_consumer("hello", [], preload=preload)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[wrapped] hello\n"


@pytest.mark.parametrize("env,expected", [({}, 0), (fault_env(79), 999)])
def test_concurrent_first_calls_from_many_threads(run_consumer, native, env, expected):
    """Sixteen threads resolve entry points and call at the same instant, twenty times over: every call
    gets the same answer and nothing crashes (initialisation and slot adoption are race-free)."""
    env = {k: v for k, v in env.items() if k != "SIM_LOG"}
    for _ in range(20):
        result = run_consumer("threads_consumer", [], preload=[native.shim], env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"result={expected} count={16 * 20000}"]
