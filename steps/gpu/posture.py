"""What a run may expect of NVSentinel on this cluster and node (shared/research/nvsentinel-2026-12.md §3).

* Posture — `--expect cordon|annotate|none` (`auto`: from fault-quarantine's configuration when
  readable). NVSentinel in dry-run or monitor-only (a ruleset that does not cordon) records its finding
  — the `SysLogsXIDError` condition, the `quarantineHealthEvent` annotation, the
  `dgxc.nvidia.com/nvsentinel-state` label — and never cordons. `none`: nothing is expected of NVSentinel.
* Opt-out — a node labelled `nvsentinel.dgxc.nvidia.com/managed=false` (events stored only) or
  `k8saas.nvidia.com/ManagedByNVSentinel=false` (the default ruleset's node match), or lacking the latter
  where a ruleset requires it to be "true", is not quarantined.
* Circuit breaker — trips when the cordoned GPU nodes reach the lower of `percentage` of the GPU nodes
  and `maxNodes` (PR #1713); a tripped breaker halts every event, the healthy one that would uncordon
  included, until someone resets it.
* Deduplication — platform-connectors downgrade a repeat of (node, check, GPU, error code) within the
  suppression window (3 min) to store-only: no cordon.

fault-quarantine's configuration is ConfigMap `fault-quarantine`, key `config.toml` (nvsentinel.md
§3.2): `[circuitBreaker]` (`enabled`, `percentage`, `maxNodes`), `[[rule-sets]]` with
`[rule-sets.cordon] shouldCordon`. We also honour a top-level `dryRun = true` (the chart's
`global.dryRun`) when the rendered file carries it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from steps.errors import StepError
from steps.gpu import nvsentinel as nv
from steps.kube.client import Kube, Ref

EXPECTS = ("auto", "cordon", "annotate", "none")

CHART_BREAKER_PERCENTAGE = 50


@dataclass(frozen=True)
class FaultQuarantineConfig:
    readable: bool
    dry_run: bool = False
    should_cordon: bool = True
    breaker_enabled: bool = True
    breaker_percentage: float = CHART_BREAKER_PERCENTAGE
    breaker_max_nodes: int = 0
    requires_managed_label: bool = False
    problem: str = ""

    def posture(self) -> tuple[str, str]:
        """(cordon | annotate, why) for --expect auto."""
        if not self.readable:
            return "cordon", f"fault-quarantine configuration not readable ({self.problem}): assuming it cordons"
        if self.dry_run:
            return "annotate", "fault-quarantine runs dry-run: it annotates, never cordons"
        if not self.should_cordon:
            return "annotate", "fault-quarantine's rulesets do not cordon (monitor-only)"
        return "cordon", "fault-quarantine's rulesets cordon"


def parse_fault_quarantine(text: str) -> FaultQuarantineConfig:
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return FaultQuarantineConfig(False, problem=f"config.toml: {error}")
    breaker = config.get("circuitBreaker") or {}
    rulesets = config.get("rule-sets") or []
    cordons = [bool((r.get("cordon") or {}).get("shouldCordon", False)) for r in rulesets if isinstance(r, dict)]
    requires = nv.MANAGED_LABEL in text and ('== "true"' in text or "== 'true'" in text)
    return FaultQuarantineConfig(
        True,
        dry_run=bool(config.get("dryRun", False)),
        should_cordon=any(cordons) if cordons else True,
        breaker_enabled=bool(breaker.get("enabled", True)),
        breaker_percentage=float(breaker.get("percentage", CHART_BREAKER_PERCENTAGE)),
        breaker_max_nodes=int(breaker.get("maxNodes", 0) or 0),
        requires_managed_label=requires,
    )


def read_fault_quarantine(kube: Kube, namespace: str) -> FaultQuarantineConfig:
    try:
        cm = kube.get_or_none(Ref("v1", "configmaps", namespace, nv.FAULT_QUARANTINE_CONFIGMAP))
    except StepError as error:  # forbidden, unreachable: the caller falls back to the chart's defaults
        return FaultQuarantineConfig(False, problem=str(error).splitlines()[0][:200])
    if cm is None:
        return FaultQuarantineConfig(False, problem=f"configmap {namespace}/{nv.FAULT_QUARANTINE_CONFIGMAP} not found")
    text = (cm.get("data") or {}).get(nv.FAULT_QUARANTINE_KEY)
    if text is None:
        return FaultQuarantineConfig(False, problem=f"configmap has no {nv.FAULT_QUARANTINE_KEY}")
    return parse_fault_quarantine(text)


def resolve_expect(expect: str, config: Callable[[], FaultQuarantineConfig]) -> tuple[str, str]:
    if expect != "auto":
        return expect, "asked for"
    return config().posture()


def opted_out(node: Mapping[str, Any], config: FaultQuarantineConfig) -> str | None:
    labels = (node.get("metadata") or {}).get("labels") or {}
    if labels.get(nv.OPT_OUT_LABEL) == "false":
        return f"{nv.OPT_OUT_LABEL}=false (NVSentinel stores its events only)"
    if labels.get(nv.MANAGED_LABEL) == "false":
        return f"{nv.MANAGED_LABEL}=false (the ruleset's node match excludes it)"
    if config.requires_managed_label and labels.get(nv.MANAGED_LABEL) != "true":
        return f"no {nv.MANAGED_LABEL}=true, which fault-quarantine's rulesets require"
    return None


def is_annotated(node: Mapping[str, Any]) -> bool:
    """fault-quarantine's finding without a cordon: a non-empty quarantineHealthEvent and the state label."""
    meta = node.get("metadata") or {}
    event = (meta.get("annotations") or {}).get(nv.EVENT_ANNOTATION) or ""
    return event.strip() not in ("", "[]", "null") and nv.STATE_LABEL in (meta.get("labels") or {})


@dataclass(frozen=True)
class Headroom:
    gpu_nodes: int
    cordoned: int
    threshold: float
    after: int  # cordoned GPU nodes once this run's node is cordoned

    @property
    def trips(self) -> bool:
        return self.gpu_nodes > 0 and self.after >= self.threshold

    def describe(self, config: FaultQuarantineConfig) -> str:
        bound = f"{config.breaker_percentage:g}% of {self.gpu_nodes} GPU nodes"
        if config.breaker_max_nodes:
            bound = f"the lower of {bound} and maxNodes {config.breaker_max_nodes}"
        return f"{self.after} of {self.gpu_nodes} GPU nodes cordoned with this run, breaker threshold {self.threshold:g} ({bound})"


def breaker_headroom(gpu_nodes: list[dict], target: str, config: FaultQuarantineConfig) -> Headroom:
    """As fault-quarantine counts (`--gpu-node-label nvidia.com/gpu.present=true`)."""
    total = len(gpu_nodes)
    cordoned = {n["metadata"]["name"] for n in gpu_nodes if (n.get("spec") or {}).get("unschedulable")}
    threshold = total * config.breaker_percentage / 100
    if config.breaker_max_nodes:
        threshold = min(threshold, config.breaker_max_nodes)
    return Headroom(total, len(cordoned), threshold, len(cordoned | {target}))


def condition_repeat(node: Mapping[str, Any], error_code: str, pci: str | None, since_ms: int, window_s: float) -> str | None:
    """The node condition shows an earlier event of the same error code (and GPU, when known) inside the
    dedup window before `since_ms`: NVSentinel will (or did) treat ours as a repeat. Returns the evidence."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") != nv.XID_CONDITION or condition.get("status") != "True":
            continue
        entries = [e for e in (condition.get("message") or "").split(";") if f"ErrorCode:{error_code} " in e]
        if pci is not None:
            entries = [e for e in entries if f"PCI:{pci}" in e]
        stamp = condition.get("lastHeartbeatTime") or condition.get("lastTransitionTime")
        if not entries or not stamp:
            continue
        at_ms = int(datetime.fromisoformat(stamp).timestamp() * 1000)
        # Strictly before the fault's second (condition times are whole seconds): never our own event.
        if since_ms - window_s * 1000 <= at_ms < since_ms - since_ms % 1000:
            return f"condition {nv.XID_CONDITION} carries ErrorCode:{error_code}{' PCI:' + pci if pci else ''} from {stamp}"
    return None
