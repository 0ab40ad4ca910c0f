"""Chaos Mesh `NetworkChaos` objects for a degradation, as pure functions (no API calls here).

Schema (chaos-mesh.org/v1alpha1, checked by the real CRD in the tests): `spec.selector` and
`spec.target.selector` are PodSelectorSpecs — `namespaces: [..]`, `labelSelectors: {key: value}`
(a plain string map) and `expressionSelectors: [{key, operator, values}]` — and `target` also needs
its own `mode`. The reference put `namespaces`/`labelSelectors` directly under `target` and nested
`matchExpressions` inside `labelSelectors`; after pruning that selects something else entirely.
`bandwidth.limit`/`buffer` are integers. A NetworkChaos applies one `action`, so each action of a run
is its own object (the reference silently applied only the first of several).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from steps.errors import BadInput
from steps.network.objects import CHAOS_API, metadata
from steps.network.selectors import PodGroup, split_requirements

ACTIONS = ("loss", "delay", "bandwidth", "corrupt", "duplicate")
MODES = ("all", "one", "fixed", "fixed-percent", "random-max-percent")
DIRECTIONS = ("to", "from", "both")
FAULT = "network-degrade"
LATENCY = re.compile(r"^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)$")  # the CRD's own pattern for latency/jitter
RATE = re.compile(r"^[0-9]+(\.[0-9]+)?(bps|kbps|mbps|gbps|tbps|bit|kbit|mbit|gbit|tbit)$")  # tc's rate units


@dataclass(frozen=True)
class Degradation:
    loss: float | None = None
    loss_correlation: float = 0
    delay: str | None = None
    jitter: str | None = None
    delay_correlation: float = 0
    bandwidth: str | None = None
    bandwidth_limit: int = 20480
    bandwidth_buffer: int = 10000
    corrupt: float | None = None
    corrupt_correlation: float = 0
    duplicate: float | None = None
    duplicate_correlation: float = 0

    def only(self, actions: tuple[str, ...]) -> Degradation:
        """Just these actions; BadInput for one without its value (its option was not given)."""
        amounts = {
            "loss": self.loss,
            "delay": self.delay,
            "bandwidth": self.bandwidth,
            "corrupt": self.corrupt,
            "duplicate": self.duplicate,
        }
        missing = [a for a in actions if amounts[a] is None]
        if missing:
            raise BadInput(f"--action {missing[0]} needs its value (--{missing[0]})")
        return Degradation(
            **{**asdict(self), **{a: None for a in ACTIONS if a not in actions}, **({"jitter": None} if "delay" not in actions else {})}
        )

    def actions(self) -> list[tuple[str, dict]]:
        """(action, its spec block) for every action asked for, in ACTIONS order."""
        out = []
        if self.loss is not None:
            out.append(("loss", {"loss": _pct(self.loss), "correlation": _pct(self.loss_correlation)}))
        if self.delay is not None:
            block = {"latency": self.delay, "correlation": _pct(self.delay_correlation)}
            if self.jitter is not None:
                block["jitter"] = self.jitter
            out.append(("delay", block))
        if self.bandwidth is not None:
            out.append(("bandwidth", {"rate": self.bandwidth, "limit": self.bandwidth_limit, "buffer": self.bandwidth_buffer}))
        if self.corrupt is not None:
            out.append(("corrupt", {"corrupt": _pct(self.corrupt), "correlation": _pct(self.corrupt_correlation)}))
        if self.duplicate is not None:
            out.append(("duplicate", {"duplicate": _pct(self.duplicate), "correlation": _pct(self.duplicate_correlation)}))
        return out


def _pct(value: float) -> str:
    return f"{value:g}"  # Chaos Mesh takes percentages as strings without '%'


def go_duration(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{int(round(seconds * 1000))}ms"


def pod_selector(group: PodGroup) -> dict:
    labels, expressions = split_requirements(group.requirements)
    out: dict = {"namespaces": [group.namespace]}
    if labels:
        out["labelSelectors"] = labels
    if expressions:
        out["expressionSelectors"] = expressions
    return out


def chaos_name(run_id: str, action: str, source: int, peer: int | None) -> str:
    return f"faultflow-{run_id}-{action}-{source}" + (f"-{peer}" if peer is not None else "")


def build_chaos(
    run_id: str,
    sources: list[PodGroup],
    peers: list[PodGroup],
    degradation: Degradation,
    mode: str,
    mode_value: str | None,
    direction: str,
    duration_s: float,
) -> list[dict]:
    """One NetworkChaos per action × source group × peer group (a selector is one conjunction).
    `duration` makes Chaos Mesh itself end the fault on time, whatever happens to the workflow."""
    objs = []
    for action, block in degradation.actions():
        for i, source in enumerate(sources):
            for j, peer in enumerate(peers or [None]):
                spec: dict = {
                    "action": action,
                    action: block,
                    "mode": mode,
                    "selector": pod_selector(source),
                    "direction": direction,
                    "duration": go_duration(duration_s),
                }
                if mode_value is not None:
                    spec["value"] = mode_value
                if peer is not None:
                    spec["target"] = {"mode": "all", "selector": pod_selector(peer)}
                meta = metadata(chaos_name(run_id, action, i, j if peers else None), source.namespace, run_id, FAULT)
                objs.append({"apiVersion": CHAOS_API, "kind": "NetworkChaos", "metadata": meta, "spec": spec})
    return objs
