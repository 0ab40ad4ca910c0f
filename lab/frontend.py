"""The lab's Dynamo frontend: the OpenAI-compatible API of `lab.inference_simulator`, answered by the
DGD's live GPU workers instead of canned text.

Copies what matters of `python -m dynamo.frontend` for a fault scenario: requests are routed to the
worker instances that are Ready (round robin); when a worker fails a request (its GPU failed and it
died mid-request) the request is retried once on another instance, as Dynamo's request migration
does; with no Ready instance the answer is 503. Runs in the supervisor process (aiohttp on loopback,
its own thread) for the lifetime of the DGD's frontend pod.
"""

from __future__ import annotations

import itertools
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
        instances = self.endpoints()
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
