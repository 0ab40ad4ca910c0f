"""Shared pieces of the inference and report tests: the frontend simulator and a CLI runner."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lab.inference_simulator import InferenceSimulator
from tests.cli import FAULTFLOW, faultflow  # noqa: F401  (re-exported for the inference tests)


@pytest.fixture
def simulator():
    with InferenceSimulator() as sim:
        yield sim


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(condition, timeout: float, what: str, interval: float = 0.02):
    """Poll a condition with a deadline (never a bare sleep standing in for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
