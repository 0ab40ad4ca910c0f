"""Every scenario, in the order they are rendered and listed."""

from __future__ import annotations

from workflows.declaration import Scenario
from workflows.scenarios import (
    cuda_only,
    gpu_fault,
    network_degrade,
    network_partition,
    xid_only,
)

SCENARIOS: tuple[Scenario, ...] = (
    gpu_fault.SCENARIO,
    xid_only.SCENARIO,
    cuda_only.SCENARIO,
    network_partition.SCENARIO,
    network_degrade.SCENARIO,
)


def by_name(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(f"unknown scenario {name!r}: {', '.join(s.name for s in SCENARIOS)}")
