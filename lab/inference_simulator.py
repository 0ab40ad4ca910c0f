"""A SIMULATOR of the Dynamo frontend's OpenAI-compatible API, for tests, benchmarks and the lab.

It is a real HTTP server (aiohttp) on loopback that answers `/v1/chat/completions`,
`/v1/completions` and `/v1/models` like a Dynamo frontend, and can be told to misbehave the ways a
frontend does while a GPU fails: 5xx, hang, malformed body, wrong shape, empty content, dropped
connection, slow answers. Behaviour follows rules matched by request number (deterministic under
concurrency 1) or by wall-clock time ("fail until T, then recover").

In-process: `with InferenceSimulator() as sim: sim.rules = [...]` (the server runs on its own thread
and event loop). As a process: `python -m lab.inference_simulator --port 0` prints `port: N`.
Rules can also be replaced over HTTP: `PUT /_simulator/rules` with a JSON list of rule objects.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import json
import threading
import time
from dataclasses import asdict, dataclass

from aiohttp import web

DEFAULT_MODEL = "Qwen/Qwen3-0.6B"


class Behaviour(str, enum.Enum):
    OK = "ok"
    ERROR = "error"  # HTTP `status` (default 503) with an error object
    HANG = "hang"  # never answers (until the simulator stops)
    NOT_JSON = "not_json"  # 200 with a body that is not JSON
    WRONG_SHAPE = "wrong_shape"  # 200, JSON, but no choices
    EMPTY = "empty"  # 200, the right shape, empty generated text
    DROP = "drop"  # closes the connection without answering


@dataclass(frozen=True)
class Rule:
    """Applies to completion requests numbered [from_request, until_request) (1-based) whose arrival
    wall-clock time is in [from_time, until_time); None means unbounded. First match wins."""

    behaviour: Behaviour = Behaviour.OK
    from_request: int | None = None
    until_request: int | None = None
    from_time: float | None = None
    until_time: float | None = None
    status: int = 503
    delay: float = 0.0  # seconds before answering (any behaviour but hang)

    def matches(self, number: int, now: float) -> bool:
        return (
            (self.from_request is None or number >= self.from_request)
            and (self.until_request is None or number < self.until_request)
            and (self.from_time is None or now >= self.from_time)
            and (self.until_time is None or now < self.until_time)
        )

    @classmethod
    def from_dict(cls, data: dict) -> Rule:
        return cls(**{**data, "behaviour": Behaviour(data.get("behaviour", "ok"))})


class InferenceSimulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: str = DEFAULT_MODEL, text: str = "Hello from the simulator."):
        self.host = host
        self.port = port
        self.model = model
        self.text = text
        self.rules: list[Rule] = []
        self.completions = 0  # completion requests received
        self.last_request: dict | None = None  # body of the last completion request
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- behaviour -------------------------------------------------------------------------------
    def _rule(self, number: int) -> Rule:
        now = time.time()
        for rule in list(self.rules):
            if rule.matches(number, now):
                return rule
        return Rule()

    def _body(self, kind: str) -> dict:
        if kind == "models":
            return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "simulator"}]}
        usage = {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14}
        if kind == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": self.text}, "finish_reason": "stop"}
            return {
                "id": "chatcmpl-sim",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [choice],
                "usage": usage,
            }
        choice = {"index": 0, "text": self.text, "finish_reason": "stop"}
        return {
            "id": "cmpl-sim",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice],
            "usage": usage,
        }

    async def _answer(self, request: web.Request, kind: str) -> web.StreamResponse:
        if kind == "models":
            rule = self._rule(self.completions + 1)
            # Body-shape faults are the workers'; the frontend still lists its model.
            if rule.behaviour in (Behaviour.WRONG_SHAPE, Behaviour.EMPTY):
                rule = Rule(delay=rule.delay)
        else:
            self.completions += 1
            rule = self._rule(self.completions)
            try:
                self.last_request = await request.json()
            except ValueError:
                self.last_request = None
        if rule.behaviour is Behaviour.HANG:
            await self._release.wait()
            raise web.HTTPServiceUnavailable(text="simulator stopping")
        if rule.delay > 0:
            await asyncio.sleep(rule.delay)
        if rule.behaviour is Behaviour.OK:
            return await self._generate(request, kind)
        if rule.behaviour is Behaviour.ERROR:
            error = {"error": {"message": "simulated failure", "type": "internal_error", "code": rule.status}}
            return web.json_response(error, status=rule.status)
        if rule.behaviour is Behaviour.NOT_JSON:
            return web.Response(status=200, text="<html>upstream worker gone</html>", content_type="text/html")
        if rule.behaviour is Behaviour.WRONG_SHAPE:
            return web.json_response({"object": "error", "message": "no worker available"})
        if rule.behaviour is Behaviour.EMPTY:
            body = self._body(kind)
            if kind == "chat":
                body["choices"][0]["message"]["content"] = ""
            else:
                body["choices"][0]["text"] = ""
            return web.json_response(body)
        # DROP: close the socket with nothing written; the client sees a disconnect.
        request.transport.close()
        raise asyncio.CancelledError

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        """A healthy answer. The lab's routing frontend (lab.frontend) generates through its workers here."""
        return web.json_response(self._body(kind))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "chat")

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "completions")

    async def _models(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "models")

    async def _rules_put(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.rules = [Rule.from_dict(item) for item in data]
        return web.json_response([asdict(r) for r in self.rules])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_put("/_simulator/rules", self._rules_put)
        return app

    # -- lifecycle -------------------------------------------------------------------------------
    async def start_async(self) -> None:
        self._release = asyncio.Event()
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def stop_async(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> InferenceSimulator:
        """Serve on a thread of its own; returns once the port accepts connections."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.start_async())
            except BaseException as error:  # surfaced to the caller below
                failure.append(error)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop_async())
            self._loop.close()

        self._thread = threading.Thread(target=serve, name="inference-simulator", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("inference simulator did not start within 10 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop serving: afterwards the port refuses connections."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> InferenceSimulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible frontend SIMULATOR (loopback only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--rules", default="[]", help="JSON list of rules")
    args = parser.parse_args()
    sim = InferenceSimulator(args.host, args.port, args.model)
    sim.rules = [Rule.from_dict(item) for item in json.loads(args.rules)]

    async def serve() -> None:
        await sim.start_async()
        print(f"port: {sim.port}", flush=True)
        stop = asyncio.Event()
        import signal

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await sim.stop_async()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
