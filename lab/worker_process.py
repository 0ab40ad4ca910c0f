"""A GPU worker process of the lab: what a Dynamo backend worker does to a GPU, reduced to its CUDA calls.

Standard library only (it starts in a fraction of a second, many times per scenario). It reaches the
driver the way cudart does — `dlopen("libcuda.so.1")`, `cuGetProcAddress_v2` fetched by `dlsym`, every
other entry point through `cuGetProcAddress` — so with `LD_PRELOAD` set to the real shim, every call
goes through the shim; `libcuda.so.1` is the lab's driver simulator (lab/native/driver_simulator.c).

* start: cuInit, cuDeviceGet, cuCtxCreate; a failure exits with status 1 (a new process during XID 79
  finds no device) — the kubelet simulator restarts it with a crash-loop backoff;
* an engine loop keeps the GPU busy (alloc, launch, synchronize, free each step), as a serving engine
  does between requests, so a fault kills the worker even without traffic;
* HTTP on --host (default 127.0.0.1; `0.0.0.0` in a pod, so the pod's address serves it):--port:
  `GET /health` (200 once the context exists), `POST /generate` (one engine
  step, then generated text as JSON). A failing CUDA call answers 500 and exits with status 1, like an
  engine that dies on an unrecoverable CUDA error.

    python -m lab.worker_process --port 8123 --name pod-name [--host 0.0.0.0] [--gpu 0] [--step-interval 0.05]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CUresult = ctypes.c_int
PROC_PROTO = ctypes.CFUNCTYPE(
    CUresult, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_ulonglong, ctypes.POINTER(ctypes.c_int)
)
LAUNCH_PROTO = ctypes.CFUNCTYPE(CUresult, ctypes.c_void_p, *([ctypes.c_uint] * 7), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class CudaError(RuntimeError):
    def __init__(self, call: str, code: int):
        super().__init__(f"{call} failed: CUDA error {code}")
        self.call, self.code = call, code


class Driver:
    """The driver API entry points this worker uses, fetched as cudart fetches them."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libcuda.so.1", mode=os.RTLD_NOW | os.RTLD_LOCAL)
        bootstrap = PROC_PROTO(("cuGetProcAddress_v2", lib))
        pointer = ctypes.c_void_p()
        self._check("cuGetProcAddress_v2", bootstrap(b"cuGetProcAddress", ctypes.byref(pointer), 12000, 0, None))
        self._proc = PROC_PROTO(pointer.value)
        proto_i = ctypes.CFUNCTYPE(CUresult, ctypes.c_uint)
        self.init = self._get("cuInit", 2000, proto_i)
        self.device_get = self._get("cuDeviceGet", 2000, ctypes.CFUNCTYPE(CUresult, ctypes.POINTER(ctypes.c_int), ctypes.c_int))
        self.ctx_create = self._get(
            "cuCtxCreate", 3020, ctypes.CFUNCTYPE(CUresult, ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint, ctypes.c_int)
        )
        self.alloc = self._get("cuMemAlloc", 3020, ctypes.CFUNCTYPE(CUresult, ctypes.POINTER(ctypes.c_ulonglong), ctypes.c_size_t))
        self.free = self._get("cuMemFree", 3020, ctypes.CFUNCTYPE(CUresult, ctypes.c_ulonglong))
        self.launch = self._get("cuLaunchKernel", 4000, LAUNCH_PROTO)
        self.sync = self._get("cuCtxSynchronize", 2000, ctypes.CFUNCTYPE(CUresult))

    def _get(self, name: str, version: int, proto):
        pointer = ctypes.c_void_p()
        self._check(f"cuGetProcAddress({name})", self._proc(name.encode(), ctypes.byref(pointer), version, 0, None))
        return proto(pointer.value)

    @staticmethod
    def _check(call: str, code: int) -> None:
        if code != 0:
            raise CudaError(call, code)

    def open_context(self, gpu: int) -> None:
        self._check("cuInit", self.init(0))
        device = ctypes.c_int()
        self._check("cuDeviceGet", self.device_get(ctypes.byref(device), gpu))
        ctx = ctypes.c_void_p()
        self._check("cuCtxCreate_v2", self.ctx_create(ctypes.byref(ctx), 0, device.value))

    def step(self) -> None:
        """One engine step: allocate, launch, synchronize, free."""
        ptr = ctypes.c_ulonglong()
        self._check("cuMemAlloc_v2", self.alloc(ctypes.byref(ptr), 1 << 20))
        self._check("cuLaunchKernel", self.launch(None, 1, 1, 1, 1, 1, 1, 0, None, None, None))
        self._check("cuCtxSynchronize", self.sync())
        self._check("cuMemFree_v2", self.free(ptr.value))


class Engine:
    def __init__(self, driver: Driver, name: str):
        self.driver, self.name = driver, name
        self.lock = threading.Lock()
        self.steps = 0

    def step(self) -> None:
        with self.lock:
            try:
                self.driver.step()
            except CudaError as error:
                die(f"engine step {self.steps}: {error}")
            self.steps += 1

    def generate(self, prompt: str, max_tokens: int) -> str:
        self.step()
        words = max(1, min(max_tokens, 16))
        return " ".join(["token"] * words) + f" (from {self.name})"


def die(reason: str) -> None:
    # An engine that hits an unrecoverable CUDA error exits; no cleanup can help a lost GPU.
    print(f"worker: {reason}; exiting", file=sys.stderr, flush=True)
    os._exit(1)


def handler(engine: Engine):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # request lines would drown the pod log
            pass

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"status": "ready", "steps": engine.steps})
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/generate":
                self._reply(404, {"error": "not found"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._reply(400, {"error": "body is not JSON"})
                return
            text = engine.generate(str(request.get("prompt", "")), int(request.get("max_tokens") or 16))
            self._reply(200, {"text": text})

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="lab GPU worker (driver API through cuGetProcAddress)")
    parser.add_argument("--port", type=int, required=True)
    # Loopback for the simulated lab's pod processes (they share the host's network); a real pod
    # listens on its own address, where its readinessProbe and the frontend reach it.
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="worker")
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--step-interval", type=float, default=0.05, help="seconds between idle engine steps")
    args = parser.parse_args(argv)
    try:
        driver = Driver()
        driver.open_context(args.gpu)
    except (CudaError, OSError, AttributeError) as error:
        die(f"cannot start: {error}")
    engine = Engine(driver, args.name)
    server = ThreadingHTTPServer((args.host, args.port), handler(engine))
    server.daemon_threads = True
    print(f"worker: {args.name} serving on {args.host}:{args.port} (GPU {args.gpu})", file=sys.stderr, flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    idle = threading.Event()
    # The engine's own loop: a real engine steps continuously while it holds work; here at a fixed
    # cadence, so a fault is noticed within one interval without any traffic.
    while not idle.wait(args.step_interval):
        engine.step()
    return 0


if __name__ == "__main__":
    sys.exit(main())
