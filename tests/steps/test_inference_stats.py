"""Phases, percentiles, first failure and recovery computed exactly on a run with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steps.events import Event
from steps.inference.success_window import SuccessWindow
from steps.report.phases import boundaries
from steps.report.stats import build_columns, percentile, phase_stats, run_figures, sustained_recovery
from tests.steps.run_fixtures import CLEARED, CORDONED, DETECTED, FAILED_LATENCY, FAULT, T0, events, latency, linear_percentile, records

WINDOW, THRESHOLD = 5, 0.9
RECOVERED_REQUEST = 46  # first ok after the outage is 42; a window of 5 is full of successes at 46


def analyse():
    columns = build_columns(records())
    bounds = boundaries(events())
    run_end = T0 + 59 + latency(59)
    return (
        columns,
        bounds,
        phase_stats(columns, bounds, run_end, WINDOW, THRESHOLD),
        run_figures(columns, events(), bounds, run_end, WINDOW, THRESHOLD),
    )


def test_phase_boundaries_come_from_the_events():
    bounds = boundaries(events())
    assert [(b.phase, b.time - T0 if math.isfinite(b.time) else None, b.event) for b in bounds] == [
        ("baseline", None, None),
        ("fault", FAULT, "fault_injected"),
        ("remediation", DETECTED, "xid_detected"),
        ("recovery", 40.0, "dgd_restored"),
    ]


def test_explicit_phase_events_add_boundaries_and_early_remediation_events_are_ignored():
    extra = [Event("x", "phase_started", {"phase": "hold"}, T0 + 35), Event("x", "node_cordoned", {}, T0 + 1)]
    bounds = boundaries(events() + extra)
    assert [b.phase for b in bounds] == ["baseline", "fault", "remediation", "hold", "recovery"]
    assert bounds[2].time == T0 + DETECTED  # the cordon before the fault does not open remediation


def test_per_phase_counts_rates_and_percentiles():
    _, _, phases, _ = analyse()
    by = {p.name: p for p in phases}
    assert [p.name for p in phases] == ["baseline", "fault", "remediation", "recovery"]
    assert (by["baseline"].requests, by["baseline"].ok) == (20, 20)
    assert (by["fault"].requests, by["fault"].ok) == (5, 1)
    assert (by["remediation"].requests, by["remediation"].ok, by["remediation"].success_rate) == (15, 0, 0.0)
    assert (by["recovery"].requests, by["recovery"].ok, by["recovery"].success_rate) == (20, 18, 0.9)
    baseline_latencies = [latency(i) for i in range(20)]
    for q in (50, 90, 99):
        assert by["baseline"].latency[f"p{q}"] == pytest.approx(linear_percentile(baseline_latencies, q), abs=1e-12)
    recovered_latencies = [latency(i) for i in range(42, 60)]
    assert by["recovery"].latency["p99"] == pytest.approx(linear_percentile(recovered_latencies, 99), abs=1e-12)
    assert by["remediation"].latency == {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    assert by["remediation"].outcomes == {"http_5xx": 15}


def test_per_phase_first_failure_and_recovery():
    _, _, phases, _ = analyse()
    by = {p.name: p for p in phases}
    assert by["baseline"].time_to_first_failure_s is None and by["baseline"].recovered is None
    assert by["fault"].time_to_first_failure_s == pytest.approx(1 + FAILED_LATENCY)
    assert by["fault"].recovered is False
    rec = by["recovery"]
    assert rec.time_to_first_failure_s == pytest.approx(FAILED_LATENCY)  # request at 40 s failed
    assert rec.time_to_recovery_s == pytest.approx(RECOVERED_REQUEST + latency(RECOVERED_REQUEST) - 40.0)


def test_run_figures_exact():
    _, _, _, f = analyse()
    assert f.time_to_first_failure_s == pytest.approx(21 + FAILED_LATENCY - FAULT)
    assert f.first_success_after_failure == pytest.approx(T0 + 42 + latency(42))
    assert f.time_to_recovery_s == pytest.approx(RECOVERED_REQUEST + latency(RECOVERED_REQUEST) - FAULT)
    assert f.detection_s == pytest.approx(DETECTED - FAULT)
    # Requests started from the fault (20 s) until recovery (46.146 s): 20..46 = 27, of which 20 and 42-46 ok.
    assert f.requests_during_fault == 27
    assert f.availability_during_fault == pytest.approx(6 / 27)
    assert f.final_window_ok and f.impact_observed
    assert CORDONED > DETECTED and CLEARED > FAULT


def test_percentile_is_numpy_linear():
    values = np.array([4.0, 1.0, 3.0, 2.0])
    assert [percentile(values, q) for q in (50, 90, 99)] == pytest.approx([2.5, 3.7, 3.97])
    assert percentile(np.array([]), 50) is None


def _oracle(oks: list[bool], window: int, threshold: float):
    """The live rule: feed a SuccessWindow; recovered at the last step that turned it satisfied for good."""
    sliding, recovered = SuccessWindow(window), None
    for i, ok in enumerate(oks):
        sliding.add(ok)
        if sliding.satisfied(threshold):
            recovered = i if recovered is None else recovered
        else:
            recovered = None
    return recovered


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=60), st.integers(1, 8), st.sampled_from([0.5, 0.8, 0.9, 1.0]))
def test_report_recovery_agrees_with_the_live_window(oks, window, threshold):
    assert sustained_recovery(np.array(oks, dtype=bool), window, threshold) == _oracle(oks, window, threshold)


def test_flapping_is_not_recovered_until_it_stops():
    oks = [False] + [True] * 5 + [False] + [True] * 5
    assert sustained_recovery(np.array(oks), 5, 1.0) == 11
    assert sustained_recovery(np.array(oks[:-1]), 5, 1.0) is None
