"""The request classifier against a real HTTP server (the frontend simulator) on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lab.inference_simulator import DEFAULT_MODEL, Behaviour, Rule
from steps.inference.client import InferenceClient, InferenceTarget, WallClock, generated_text, new_http_client
from steps.inference.records import FAILURES, Outcome
from tests.steps.inference_fixtures import simulator  # noqa: F401  (fixture)


def send_one(url: str, **target) -> object:
    async def go():
        async with new_http_client(2, target.get("timeout", 5.0)) as http:
            client = InferenceClient(InferenceTarget(base_url=url, **target), http, WallClock(), "test")
            return await client.send(1, phase="baseline"), client.model

    return asyncio.run(go())


CASES = [
    (Rule(Behaviour.OK), "chat", Outcome.OK),
    (Rule(Behaviour.OK), "completions", Outcome.OK),
    (Rule(Behaviour.ERROR, status=503), "chat", Outcome.HTTP_5XX),
    (Rule(Behaviour.ERROR, status=500), "completions", Outcome.HTTP_5XX),
    (Rule(Behaviour.ERROR, status=429), "chat", Outcome.HTTP_4XX),
    (Rule(Behaviour.ERROR, status=404), "chat", Outcome.HTTP_4XX),
    (Rule(Behaviour.ERROR, status=302), "chat", Outcome.HTTP_OTHER),
    (Rule(Behaviour.HANG), "chat", Outcome.TIMEOUT),
    (Rule(Behaviour.NOT_JSON), "chat", Outcome.MALFORMED_BODY),
    (Rule(Behaviour.WRONG_SHAPE), "completions", Outcome.MALFORMED_BODY),
    (Rule(Behaviour.EMPTY), "chat", Outcome.EMPTY_CONTENT),
    (Rule(Behaviour.EMPTY), "completions", Outcome.EMPTY_CONTENT),
    (Rule(Behaviour.DROP), "chat", Outcome.CONNECTION_DROPPED),
]


@pytest.mark.parametrize("rule, api, expected", CASES, ids=[f"{r.behaviour.value}-{r.status}-{a}" for r, a, _ in CASES])
def test_every_outcome_is_classified(simulator, rule, api, expected):
    simulator.rules = [rule]
    record, _ = send_one(simulator.url, api=api, model="m", timeout=0.3)
    assert record.outcome is expected
    assert record.start <= record.end and record.latency >= 0
    assert (record.outcome in FAILURES) == (expected is not Outcome.OK)
    if expected is not Outcome.OK:
        assert record.error, "a failure carries a reason"


def test_slow_but_complete_answer_is_ok_and_its_latency_measured(simulator):
    simulator.rules = [Rule(Behaviour.OK, delay=0.05)]
    record, _ = send_one(simulator.url, model="m")
    assert record.outcome is Outcome.OK
    assert record.latency >= 0.05


def test_connection_refused_when_nothing_listens():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    record, _ = send_one(f"http://127.0.0.1:{port}", model="m", timeout=2.0)
    assert record.outcome is Outcome.CONNECTION_REFUSED


def test_model_is_discovered_and_sent(simulator):
    record, model = send_one(simulator.url)
    assert record.outcome is Outcome.OK
    assert model == DEFAULT_MODEL
    assert simulator.last_request["model"] == DEFAULT_MODEL
    assert simulator.last_request["messages"][0]["content"]


def test_failed_discovery_is_the_request_outcome(simulator):
    simulator.rules = [Rule(Behaviour.ERROR, status=502)]
    record, model = send_one(simulator.url)
    assert record.outcome is Outcome.HTTP_5XX and model is None
    assert record.error.startswith("models:")


@pytest.mark.parametrize(
    "api, body, expected",
    [
        ("chat", {"choices": [{"message": {"content": "hi"}}]}, "hi"),
        ("chat", {"choices": [{"message": {"content": None, "reasoning_content": "thinking"}}]}, "thinking"),
        ("chat", {"choices": [{"message": {"content": None}}]}, ""),
        ("chat", {"choices": [{"message": {"content": 3}}]}, None),
        ("chat", {"choices": [{"message": {}}]}, None),
        ("chat", {"choices": []}, None),
        ("chat", {"error": "x"}, None),
        ("chat", ["not", "an", "object"], None),
        ("completions", {"choices": [{"text": "hi"}]}, "hi"),
        ("completions", {"choices": [{"message": {"content": "hi"}}]}, None),
    ],
)
def test_generated_text_shapes(api, body, expected):
    assert generated_text(api, body) == expected
