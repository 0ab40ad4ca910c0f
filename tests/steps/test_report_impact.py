"""The report tells "errors" from "stalled" impact per phase (hang mode: requests that block, not fail),
and names the NVML consumers' answers with their time since the fault."""

from __future__ import annotations

import json

from steps.inference.records import STALL_FACTOR, Impact
from tests.steps.inference_fixtures import faultflow

T0 = 1_700_000_000.0
BASELINE_LATENCY = 0.1


def record(seq: int, start: float, latency: float, outcome: str = "ok") -> dict:
    return {"seq": seq, "start": T0 + start, "end": T0 + start + latency, "latency": latency, "outcome": outcome, "source": "load"}


def event(at: float, step: str, name: str, **fields) -> dict:
    return {"time": T0 + at, "step": step, "event": name, **fields}


def hang_run() -> list[dict]:
    """Baseline 0–9 s; the fault at 10 s (hang: requests time out, one succeeds only after a long
    block, two fail outright); remediation at 20 s (all time out); recovery at 30 s (all fine)."""
    lines = [record(i, i, BASELINE_LATENCY) for i in range(10)]
    lines += [record(10, 10, 30.0, "timeout"), record(11, 11, 30.0, "timeout"), record(12, 12, 30.0, "timeout")]
    lines += [record(13, 13, STALL_FACTOR * BASELINE_LATENCY * 20)]  # answered, but after blocking
    lines += [record(14, 14, 0.05, "http_5xx"), record(15, 15, 0.05, "connection_dropped")]
    lines += [record(16, 16, STALL_FACTOR * BASELINE_LATENCY * 0.5)]  # slower, not blocked
    lines += [record(20 + i, 20 + i, 30.0, "timeout") for i in range(5)]
    lines += [record(30 + i, 30 + i, BASELINE_LATENCY) for i in range(10)]
    lines += [
        event(10, "inject-xid", "fault_injected", kind="xid", xid=43),
        event(
            12.5,
            "wait-for-cordon",
            "consumer_detected",
            consumer="device plugin",
            check="allocatable",
            latency_ms=2500,
            evidence="allocatable nvidia.com/gpu 7 of 8",
            at_start=False,
        ),
        event(
            13,
            "wait-for-cordon",
            "check_failed",
            check="consumer_dra_taint",
            consumer="DRA driver",
            reason="DRA driver: no dra-taint within 5s",
        ),
        event(20, "wait-for-cordon", "node_cordoned", node="n"),
        event(30, "cleanup-dgd", "dgd_restored"),
    ]
    return lines


def test_each_phase_says_whether_requests_failed_or_stalled(tmp_path):
    source = tmp_path / "in" / "run.jsonl"
    source.parent.mkdir()
    source.write_text("\n".join(json.dumps(line) for line in hang_run()) + "\n")
    out = tmp_path / "out"
    done = faultflow("step", "report", "--outputs", str(out), "--scenario", "gpu-fault", "--window", "5", "--input", str(source))
    assert done.returncode in (0, 1), done.stderr
    journal = json.loads((out / "report.json").read_text())
    by = {p["name"]: p for p in journal["phases"]}
    assert [p["name"] for p in journal["phases"]] == ["baseline", "fault", "remediation", "recovery"]
    assert (by["baseline"]["errors"], by["baseline"]["stalled"], by["baseline"]["impact"]) == (0, 0, Impact.NONE.value)
    assert (by["fault"]["errors"], by["fault"]["stalled"], by["fault"]["impact"]) == (2, 4, Impact.MIXED.value)
    assert (by["remediation"]["errors"], by["remediation"]["stalled"], by["remediation"]["impact"]) == (0, 5, "stalled")
    assert by["recovery"]["impact"] == "none"
    summary = (out / "summary.md").read_text()
    assert "| impact | errors | stalled |" in summary and "| remediation | 5 | 0.0% | stalled | 0 | 5 |" in summary
    # The consumers, named, with their time since the fault; the one that never answered too.
    assert journal["consumers"] == [
        {
            "consumer": "device plugin",
            "check": "allocatable",
            "answered": True,
            "latency_s": 2.5,
            "evidence": "allocatable nvidia.com/gpu 7 of 8",
            "upper_bound": False,
        },
        {"consumer": "DRA driver", "check": "consumer_dra_taint", "answered": False, "reason": "DRA driver: no dra-taint within 5s"},
    ]
    assert "| device plugin | allocatable nvidia.com/gpu 7 of 8 | 2.5 s |" in summary
    labels = [e["label"] for e in journal["timeline"] if e.get("event") == "consumer_detected"]
    assert labels == ["consumer reacted: device plugin (allocatable)"]


def test_without_a_baseline_only_timeouts_are_stalled(tmp_path):
    lines = [record(i, 10 + i, 60.0) for i in range(3)] + [
        record(3, 13, 1.0, "timeout"),
        event(5, "inject-xid", "fault_injected", kind="cuda"),
    ]
    source = tmp_path / "run.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "out"
    faultflow("step", "report", "--outputs", str(out), "--scenario", "cuda-only", "--window", "2", "--input", str(source))
    fault = next(p for p in json.loads((out / "report.json").read_text())["phases"] if p["name"] == "fault")
    assert (fault["errors"], fault["stalled"], fault["impact"]) == (0, 1, "stalled")
