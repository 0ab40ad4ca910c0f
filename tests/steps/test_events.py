"""The one event sink (`steps.events.emit`): each line once on stdout and once in one events file."""

from __future__ import annotations

import io
import json

from steps.event_names import EventName
from steps.events import EVENTS_FILE_ENV, emit


def _events(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_environment_file_wins_over_the_step_default(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(EVENTS_FILE_ENV, str(tmp_path / "stage" / "step-events.jsonl"))
    emit("load", EventName.LOAD_STARTED, events_file=tmp_path / "out" / "events.jsonl", rate=2.0)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == _events(tmp_path / "stage" / "step-events.jsonl")
    assert printed[0]["event"] == "load_started" and printed[0]["rate"] == 2.0
    assert not (tmp_path / "out").exists()  # never a second copy


def test_without_the_environment_the_step_default_gets_the_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(EVENTS_FILE_ENV, raising=False)
    emit("verify-inference", EventName.CHECK_PASSED, events_file=tmp_path / "events.jsonl", check="inference_gate")
    emit("verify-inference", EventName.CHECK_PASSED, check="no file given")
    assert [e["check"] for e in _events(tmp_path / "events.jsonl")] == ["inference_gate"]
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_a_given_stream_gets_the_only_copy(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(EVENTS_FILE_ENV, str(tmp_path / "step-events.jsonl"))
    stream = io.StringIO()
    emit("preflight", EventName.RUN_STARTED, stream=stream, events_file=tmp_path / "events.jsonl")
    assert json.loads(stream.getvalue())["event"] == "run_started"
    assert capsys.readouterr().out == "" and list(tmp_path.iterdir()) == []


def test_event_names_are_the_plain_strings_on_the_wire():
    assert json.loads(emit("x", EventName.FAULT_INJECTED, stream=io.StringIO()).to_json())["event"] == "fault_injected"
    assert EventName("node_cordoned") is EventName.NODE_CORDONED and f"{EventName.PODS_EVICTED}" == "pods_evicted"
