"""One OpenAI-compatible request to the Dynamo frontend, classified.

Success is HTTP 200 AND the OpenAI response shape AND generated text: the reference counted any 200,
which hides a frontend that answers with an error object or nothing at all. Every other ending gets a
class (`Outcome`) so the report can tell "the worker died" (5xx, dropped) from "the frontend is gone"
(refused) from "it hangs" (timeout).
"""

from __future__ import annotations

import asyncio
import errno
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from steps.inference.records import Outcome, RequestRecord

if TYPE_CHECKING:  # httpx is imported lazily (step start-up time)
    import httpx

API_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
MODELS_PATH = "/v1/models"
ERROR_CHARS = 200


@dataclass(frozen=True)
class InferenceTarget:
    base_url: str  # the frontend, e.g. http://vllm-agg-frontend.ns.svc:8000 (no /v1 path)
    api: str = "chat"
    model: str | None = None  # None: discover from /v1/models (data[0].id)
    prompt: str = "Say hello in one short sentence."
    max_tokens: int = 16
    timeout: float = 30.0  # whole-request bound, not just per read


class WallClock:
    """Wall-clock times derived from one monotonic clock: records line up with the other steps'
    events (wall clock) while latencies and ordering never jump when NTP steps the clock."""

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.perf_counter()

    def at(self, mono: float) -> float:
        return self._wall0 + (mono - self._mono0)


@dataclass(frozen=True)
class _Result:
    outcome: Outcome
    status: int | None = None
    error: str | None = None


def _caused_by_refusal(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or getattr(current, "errno", None) == errno.ECONNREFUSED:
            return True
        if "connection refused" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def classify_exception(error: BaseException) -> Outcome:
    import httpx

    if isinstance(error, (httpx.TimeoutException, TimeoutError)):
        return Outcome.TIMEOUT
    if isinstance(error, httpx.ConnectError):
        return Outcome.CONNECTION_REFUSED if _caused_by_refusal(error) else Outcome.CONNECTION_ERROR
    if isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return Outcome.CONNECTION_DROPPED
    return Outcome.CONNECTION_ERROR


def classify_status(status: int) -> Outcome:
    if 500 <= status <= 599:
        return Outcome.HTTP_5XX
    if 400 <= status <= 499:
        return Outcome.HTTP_4XX
    return Outcome.HTTP_OTHER


def generated_text(api: str, body: Any) -> str | None:
    """The generated text, "" when the shape is right but nothing was generated, None when malformed.

    Chat models with a reasoning parser (Qwen3 on Dynamo/vLLM) may put everything in
    `reasoning_content` and leave `content` null when max_tokens is small: that is generated text too.
    """
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    choice = choices[0]
    if api == "chat":
        message = choice.get("message")
        if not isinstance(message, dict) or "content" not in message:
            return None
        parts = [message.get("content"), message.get("reasoning_content")]
        if not any(isinstance(p, str) for p in parts) and parts[0] is not None:
            return None
        return "".join(p for p in parts if isinstance(p, str))
    text = choice.get("text")
    return text if isinstance(text, str) else None


def _snippet(text: str) -> str:
    return " ".join(text.split())[:ERROR_CHARS]


def new_http_client(concurrency: int, timeout: float) -> httpx.AsyncClient:
    import httpx

    # trust_env=False: the frontend is an in-cluster Service; a pod's HTTP(S)_PROXY must never sit
    # between the probe and what it measures.
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout),
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        trust_env=False,
    )


class InferenceClient:
    """Sends requests for one target over one shared HTTP client (connection pool)."""

    def __init__(self, target: InferenceTarget, http: httpx.AsyncClient, clock: WallClock, source: str):
        self.target = target
        self._http = http
        self._clock = clock
        self._source = source
        self._model = target.model
        self._discovery = asyncio.Lock()
        self._url = target.base_url.rstrip("/") + API_PATHS[target.api]

    @property
    def model(self) -> str | None:
        return self._model

    async def _discover_model(self) -> _Result | None:
        """Resolve the model from /v1/models once; a failure is this request's outcome."""
        async with self._discovery:
            if self._model is not None:
                return None
            response = await self._http.get(self.target.base_url.rstrip("/") + MODELS_PATH)
            if response.status_code != 200:
                return _Result(classify_status(response.status_code), response.status_code, "models: " + _snippet(response.text))
            try:
                models = response.json().get("data")
                self._model = str(models[0]["id"])
            except (ValueError, AttributeError, LookupError, TypeError):
                return _Result(Outcome.MALFORMED_BODY, 200, "models: " + _snippet(response.text))
            return None

    def _payload(self) -> dict[str, Any]:
        if self.target.api == "chat":
            return {
                "model": self._model,
                "messages": [{"role": "user", "content": self.target.prompt}],
                "max_tokens": self.target.max_tokens,
                "stream": False,
            }
        return {"model": self._model, "prompt": self.target.prompt, "max_tokens": self.target.max_tokens, "stream": False}

    async def _exchange(self) -> _Result:
        if self._model is None:
            failed = await self._discover_model()
            if failed is not None:
                return failed
        response = await self._http.post(self._url, json=self._payload())
        if response.status_code != 200:
            return _Result(classify_status(response.status_code), response.status_code, _snippet(response.text))
        try:
            body = response.json()
        except ValueError:
            return _Result(Outcome.MALFORMED_BODY, 200, "not JSON: " + _snippet(response.text))
        text = generated_text(self.target.api, body)
        if text is None:
            return _Result(Outcome.MALFORMED_BODY, 200, "not an OpenAI response: " + _snippet(response.text))
        if not text.strip():
            return _Result(Outcome.EMPTY_CONTENT, 200, "no generated text")
        return _Result(Outcome.OK, 200)

    async def send(self, seq: int, phase: str | None = None) -> RequestRecord:
        start = time.perf_counter()
        try:
            # httpx's timeout bounds each read; a server trickling bytes would never trip it.
            async with asyncio.timeout(self.target.timeout):
                result = await self._exchange()
        except Exception as error:  # every transport failure is a classified outcome, never a crash
            result = _Result(classify_exception(error), None, f"{type(error).__name__}: {_snippet(str(error))}".rstrip(": "))
        end = time.perf_counter()
        return RequestRecord(
            seq=seq,
            start=self._clock.at(start),
            end=self._clock.at(end),
            latency=end - start,
            outcome=result.outcome,
            status=result.status,
            error=result.error,
            phase=phase,
            source=self._source,
        )

    def cancelled(self, seq: int, started_mono: float, phase: str | None) -> RequestRecord:
        """The record of a request still in flight when the run stopped."""
        now = time.perf_counter()
        return RequestRecord(
            seq=seq,
            start=self._clock.at(started_mono),
            end=self._clock.at(now),
            latency=now - started_mono,
            outcome=Outcome.CANCELLED,
            phase=phase,
            source=self._source,
        )
