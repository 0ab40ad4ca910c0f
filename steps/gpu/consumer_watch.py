"""Waiting for the NVML consumers' answers (`steps.gpu.consumer_checks`) within wait-for-cordon's window.

The node-level answers are read from every state of the node the NVSentinel watch already observes
(`ConsumerTracker.observe`), so the time an undated answer (allocatable) is seen is not delayed by
NVSentinel's; what is still missing afterwards is watched for until the same deadline: the node, then
the node's ResourceSlices (a taint carries its own `timeAdded`, so watching it second loses no time).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from steps.gpu import consumer_checks as C
from steps.gpu.node_watch import watch_node_until, watch_objects_until
from steps.kube.client import Kube, Ref


class ConsumerTracker:
    """The first sighting of each selected check, from the node states it is shown in order."""

    def __init__(self, checks: list[C.ConsumerCheck], since_ms: int | None, pci: str | None = None):
        self.checks = checks
        self.since_ms = since_ms
        self.pci = pci
        self.sightings: dict[str, C.Sighting] = {}
        self._first = True

    def observe(self, node: Mapping[str, Any]) -> None:
        for check in self.checks:
            if check.on_node and check.name not in self.sightings:
                seen = C.node_sighting(check, node, self.since_ms, self._first)
                if seen is not None:
                    self.sightings[check.name] = seen
        self._first = False

    def missing(self, on_node: bool) -> list[C.ConsumerCheck]:
        return [c for c in self.checks if c.on_node == on_node and c.name not in self.sightings]

    def complete_on_node(self, _node: Mapping[str, Any] | None = None) -> bool:
        return not self.missing(on_node=True)

    def _dra_sighting(self, check: C.ConsumerCheck, items: Iterable[Mapping[str, Any]]) -> C.Sighting | None:
        return C.dra_sighting(check, items, self.since_ms, self.pci)

    def wait_rest(self, kube: Kube, node: str, deadline: float, watch_timeout_s: float = 60) -> None:
        """Watches for what is still missing until `deadline` (returns at once when nothing is)."""
        if self.missing(on_node=True):
            watch_node_until(kube, node, self.complete_on_node, deadline, watch_timeout_s=watch_timeout_s, on_object=self.observe)
        for check in self.missing(on_node=False):
            slices = Ref(C.RESOURCE_API, "resourceslices", None, "")
            seen = watch_objects_until(kube, slices, f"spec.nodeName={node}", partial(self._dra_sighting, check), deadline, watch_timeout_s)
            if seen is not None:
                self.sightings[check.name] = seen
