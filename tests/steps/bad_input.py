"""The bad-input contract, checked the same way for every step: exit 2, one line on stderr starting
`faultflow: error:`, and a snapshot of everything the step could touch unchanged."""

from __future__ import annotations


def bad_input_failures(cluster, cases: list[tuple[str, list[str]]], values: dict, snapshot) -> list[str]:
    """Runs each case; returns one line per case that broke the contract (empty when all held)."""
    failures = []
    for name, argv in cases:
        before = snapshot()
        result = cluster.faultflow(*[a.format(**values) for a in argv])
        lines = result.stderr.strip().splitlines()
        ok = result.returncode == 2 and len(lines) == 1 and lines[0].startswith("faultflow: error:") and snapshot() == before
        if not ok:
            failures.append(f"{name}: rc={result.returncode} stderr={result.stderr.strip()!r} changed={snapshot() != before}")
    return failures
