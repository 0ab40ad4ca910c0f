"""The lab's Dynamo frontend: the OpenAI-compatible API of `lab.inference_simulator`, answered by the
DGD's live GPU workers instead of canned text.

Copies what matters of `python -m dynamo.frontend` for a fault scenario: requests are routed to the
worker instances that are Ready (round robin); when a worker fails a request (its GPU failed and it
died mid-request) the request is retried once on another instance, as Dynamo's request migration
does; with no Ready instance the answer is 503. In the simulated lab it runs in the supervisor process
(aiohttp on loopback, its own thread) for the lifetime of the DGD's frontend pod.

On a real cluster it is the frontend pod's process (`python -m lab.frontend`, in the
faultflow-frontend-simulator image): its instances are the addresses of the workers' headless
Service (`--workers`, or FAULTFLOW_WORKERS, which the operator SIMULATOR sets), resolved per request
through the cluster DNS. CoreDNS answers a headless name with the Ready endpoints of the Service's
EndpointSlices, which the real endpoint-slice controller keeps from each worker's readinessProbe:
what Dynamo's Kubernetes discovery reads from the same EndpointSlices.

    python -m lab.frontend --host 0.0.0.0 --port 8000 --workers llm-vllmworker.ns.svc.cluster.local:9090
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
from collections.abc import Callable

import aiohttp
from aiohttp import web

from lab.inference_simulator import InferenceSimulator

WORKER_TIMEOUT_S = 10.0
MIGRATION_LIMIT = 1  # further instances tried after a failed one


class LabFrontend(InferenceSimulator):
    def __init__(self, port: int, endpoints: Callable[[], list[str]], host: str = "127.0.0.1"):
        super().__init__(host=host, port=port)
        self.endpoints = endpoints
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None

    async def start_async(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WORKER_TIMEOUT_S))
        await super().start_async()

    async def stop_async(self) -> None:
        await super().stop_async()
        if self._session is not None:
            await self._session.close()

    def _unavailable(self, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "service_unavailable", "code": 503}}, status=503)

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        if kind == "models":
            return await super()._generate(request, kind)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}, status=400)
        prompt = body.get("prompt") or " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
        # Off the event loop: on a real cluster the instances come from a DNS lookup.
        instances = await asyncio.get_running_loop().run_in_executor(None, self.endpoints)
        if not instances:
            return self._unavailable("no ready worker instances for the model")
        start = next(self._turn)
        tried = []
        for offset in range(min(len(instances), 1 + MIGRATION_LIMIT)):
            url = instances[(start + offset) % len(instances)]
            tried.append(url)
            try:
                async with self._session.post(f"{url}/generate", json={"prompt": prompt, "max_tokens": body.get("max_tokens")}) as reply:
                    if reply.status == 200:
                        text = (await reply.json())["text"]
                        answer = self._body(kind)
                        if kind == "chat":
                            answer["choices"][0]["message"]["content"] = text
                        else:
                            answer["choices"][0]["text"] = text
                        return web.json_response(answer)
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                continue  # the instance died mid-request: migrate to the next one
        return self._unavailable(f"worker instances failed the request ({len(tried)} tried)")


WORKERS_ENV = "FAULTFLOW_WORKERS"


def dns_instances(targets: list[str]) -> Callable[[], list[str]]:
    """`host:port` names → a function giving `http://ip:port` of every address each name has now."""

    def resolve() -> list[str]:
        urls = []
        for target in targets:
            host, _, port = target.rpartition(":")
            try:
                infos = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)
            except socket.gaierror:
                continue  # no Ready endpoint: the name has no address (NXDOMAIN), as for a Service without pods
            urls += sorted({f"http://{info[4][0]}:{port}" for info in infos})
        return urls

    return resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Dynamo frontend SIMULATOR routing to the DGD's Ready workers")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", default=os.environ.get(WORKERS_ENV, ""), help="comma-separated host:port of the workers")
    args = parser.parse_args(argv)
    targets = [t for t in args.workers.split(",") if t]
    if not targets or any(not t.rpartition(":")[2].isdigit() for t in targets):
        parser.error(f"--workers (or {WORKERS_ENV}) must list host:port, not {args.workers!r}")
    frontend = LabFrontend(args.port, dns_instances(targets), host=args.host)

    async def serve() -> None:
        await frontend.start_async()
        print(f"frontend: serving on {args.host}:{frontend.port}, workers {','.join(targets)}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await frontend.stop_async()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
