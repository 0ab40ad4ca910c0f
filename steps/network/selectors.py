"""Groups of pods named by stable labels, and the label-selector algebra the network steps need.

A `PodGroup` is "the pods in namespace N whose labels satisfy every requirement" — the shape both a
NetworkPolicy peer and a Chaos Mesh selector can express. Dynamo's pods are grouped by the labels
the operator puts on every pod it creates (DGD name + component type [+ sub-component type]), never
by pod name or a frozen copy of one pod's labels, so a pod recreated during a fault (new name, new
`pod-template-hash`) is in the same group.

Pure functions only (no API calls): parsing and rendering selectors, the groups of a DGD's roles,
and `complement`, which turns "every pod except these groups" into a union of selectors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from steps.errors import BadInput
from steps.workload import dynamo as dgd

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server

# NATS and etcd of the Dynamo platform chart (and the names the reference matched); overridable per run.
DEFAULT_NATS_SELECTOR = "app.kubernetes.io/name in (nats,dynamo-platform-nats)"
DEFAULT_ETCD_SELECTOR = "app.kubernetes.io/name in (etcd,dynamo-platform-etcd)"

# A role is a component type, except "worker", which stands for every GPU worker type (see role_groups).
ROLES = (dgd.FRONTEND_TYPE, *dgd.GPU_WORKER_TYPES)

IN, NOT_IN, EXISTS, DOES_NOT_EXIST = "In", "NotIn", "Exists", "DoesNotExist"
_NEGATION = {IN: NOT_IN, NOT_IN: IN, EXISTS: DOES_NOT_EXIST, DOES_NOT_EXIST: EXISTS}

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_SET_TERM = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*(?:(in|notin)\s*\(([^)]*)\)|(==|=|!=)\s*([^\s,()]*))?\s*$")


@dataclass(frozen=True, order=True)
class Requirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()

    def negated(self) -> Requirement:
        return Requirement(self.key, _NEGATION[self.operator], self.values)

    def to_expression(self) -> dict:
        out = {"key": self.key, "operator": self.operator}
        if self.operator in (IN, NOT_IN):
            out["values"] = list(self.values)
        return out

    def to_string(self) -> str:
        """The API's label-selector syntax (what `list pods?labelSelector=` evaluates)."""
        if self.operator == IN:
            return f"{self.key}={self.values[0]}" if len(self.values) == 1 else f"{self.key} in ({','.join(self.values)})"
        if self.operator == NOT_IN:
            return f"{self.key} notin ({','.join(self.values)})"
        return self.key if self.operator == EXISTS else f"!{self.key}"


def equals(key: str, value: str) -> Requirement:
    return Requirement(key, IN, (value,))


@dataclass(frozen=True)
class PodGroup:
    namespace: str
    requirements: tuple[Requirement, ...]

    def selector_string(self) -> str:
        return selector_string(self.requirements)


def split_requirements(requirements: tuple[Requirement, ...]) -> tuple[dict, list[dict]]:
    """(key → value for each single-value `In`, expressions for the rest): the two halves both
    Kubernetes' LabelSelector and Chaos Mesh's PodSelectorSpec have."""
    match_labels = {r.key: r.values[0] for r in requirements if r.operator == IN and len(r.values) == 1}
    expressions = [r.to_expression() for r in requirements if not (r.operator == IN and len(r.values) == 1)]
    return match_labels, expressions


def label_selector(requirements: tuple[Requirement, ...]) -> dict:
    """A Kubernetes LabelSelector: single-value `In` as matchLabels (readable), the rest as matchExpressions."""
    match_labels, expressions = split_requirements(requirements)
    out: dict = {}
    if match_labels:
        out["matchLabels"] = match_labels
    if expressions:
        out["matchExpressions"] = expressions
    return out


def requirements_of(selector: dict) -> tuple[Requirement, ...]:
    """The inverse of `label_selector` (for reading a live object back)."""
    reqs = [equals(k, v) for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        reqs.append(Requirement(e["key"], e["operator"], tuple(e.get("values") or ())))
    return tuple(reqs)


def selector_string(requirements: tuple[Requirement, ...]) -> str:
    return ",".join(r.to_string() for r in requirements)


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parses the API's label-selector syntax (`a=b,c!=d,e in (f,g),h notin (i),j,!k`); BadInput on
    anything else, and on an empty selector (it would select every pod)."""
    terms = _split_terms(text)
    if not terms:
        raise BadInput(f"label selector {text!r} is empty (it would select every pod)")
    out = []
    for term in terms:
        found = _SET_TERM.match(term)
        if found is None:
            raise BadInput(f"label selector {text!r}: cannot read {term.strip()!r}")
        bang, key, set_op, set_values, op, value = found.groups()
        if not _KEY.match(key):
            raise BadInput(f"label selector {text!r}: {key!r} is not a label key")
        if bang and (set_op or op):
            raise BadInput(f"label selector {text!r}: '!' goes only before a bare key")
        if set_op:
            values = tuple(sorted({v.strip() for v in set_values.split(",") if v.strip()}))
            if not values:
                raise BadInput(f"label selector {text!r}: {key} {set_op} () has no values")
            out.append(Requirement(key, IN if set_op == "in" else NOT_IN, values))
        elif op:
            out.append(Requirement(key, NOT_IN if op == "!=" else IN, (value,)))
        else:
            out.append(Requirement(key, DOES_NOT_EXIST if bang else EXISTS))
        for v in out[-1].values:
            if not _VALUE.match(v):
                raise BadInput(f"label selector {text!r}: {v!r} is not a label value")
    return tuple(out)


def _split_terms(text: str) -> list[str]:
    """Commas separate terms except inside `in (...)`."""
    terms, depth, current = [], 0, ""
    for char in str(text):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


# --- the groups of a DGD --------------------------------------------------------------------------


def _sub_type(obj: dict, component: dgd.Component) -> str:
    """v1alpha1 marks a disaggregated worker with `subComponentType`; the operator copies it to the pod."""
    if dgd.workload_kind(obj) != "dgd-v1alpha1":
        return ""
    return str(((obj["spec"].get("services") or {}).get(component.name) or {}).get("subComponentType") or "")


def role_groups(obj: dict, role: str) -> list[PodGroup]:
    """The pods of a DGD that play `role`, as few groups as the operator's labels allow:

    * frontend — component type `frontend`;
    * worker — every GPU worker type the DGD has (`worker`, `prefill`, `decode`) in one group;
    * prefill / decode — component type `prefill`/`decode`, or type `worker` with that sub-component
      type (v1alpha1 disaggregated graphs write it that way), so up to two groups.

    BadInput when the DGD has no component in that role (the fault would select nothing).
    """
    if dgd.workload_kind(obj) not in ("dgd-v1alpha1", "dgd-v1beta1"):
        raise BadInput(f"network faults select pods by the Dynamo operator's labels: the target must be a DGD, not {obj['kind']}")
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    base = (equals(dgd.DGD_NAME_LABEL, name),)
    comps = [(c.type, _sub_type(obj, c)) for c in dgd.components(obj)]
    if role == "worker":
        types = tuple(sorted({t for t, _ in comps if t in dgd.GPU_WORKER_TYPES}))
        groups = [PodGroup(namespace, base + (Requirement(dgd.COMPONENT_TYPE_LABEL, IN, types),))] if types else []
    elif role == "frontend":
        groups = (
            [PodGroup(namespace, base + (equals(dgd.COMPONENT_TYPE_LABEL, "frontend"),))] if any(t == "frontend" for t, _ in comps) else []
        )
    elif role in ("prefill", "decode"):
        groups = []
        if any(t == role for t, _ in comps):
            groups.append(PodGroup(namespace, base + (equals(dgd.COMPONENT_TYPE_LABEL, role),)))
        if any(t == "worker" and s == role for t, s in comps):
            groups.append(
                PodGroup(namespace, base + (equals(dgd.COMPONENT_TYPE_LABEL, "worker"), equals(dgd.SUB_COMPONENT_TYPE_LABEL, role)))
            )
    else:
        raise BadInput(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    if not groups:
        types = sorted({f"{t}/{s}" if s else t for t, s in comps})
        raise BadInput(f"DynamoGraphDeployment {namespace}/{name} has no {role} component (component types: {', '.join(types) or 'none'})")
    return groups


# --- "every pod except these groups" --------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """Pods in namespaces matching `namespace` whose labels match `pods` (both conjunctions)."""

    namespace: tuple[Requirement, ...]
    pods: tuple[Requirement, ...]

    def excluded_namespaces(self) -> set[str]:
        return {v for r in self.namespace for v in r.values}

    def covers(self, other: Peer) -> bool:
        """Every pod `other` matches, this matches too (fewer namespaces excluded, fewer requirements)."""
        return self.excluded_namespaces() <= other.excluded_namespaces() and set(self.pods) <= set(other.pods)

    def to_network_policy_peer(self) -> dict:
        # Always a namespaceSelector: a peer without one means "the policy's own namespace only",
        # which is exactly how the reference silently cut all cross-namespace traffic.
        peer = {"namespaceSelector": label_selector(self.namespace)}
        if self.pods:
            peer["podSelector"] = label_selector(self.pods)
        return peer


def complement(groups: list[PodGroup]) -> list[Peer]:
    """Peers whose union is every pod in every namespace except the pods of `groups`.

    NetworkPolicy peers are OR-ed and each is a conjunction, so "not (G1 or G2 …)" is written in
    disjunctive normal form: not-G = (namespace is not G's) or (any one of G's requirements fails),
    and the AND over the groups multiplies out. `NotIn` also matches pods without the key, which is
    exactly the negation of `In`. Terms that can match nothing are dropped.
    """
    terms: list[tuple[Requirement, ...]] = [()]
    for group in groups:
        negations = [Requirement(NAMESPACE_NAME_LABEL, NOT_IN, (group.namespace,))] + [r.negated() for r in group.requirements]
        terms = [term + (n,) for term in terms for n in negations]
    peers: list[Peer] = []
    for term in terms:
        ns = [r for r in term if r.key == NAMESPACE_NAME_LABEL]
        pods = tuple(sorted(set(r for r in term if r.key != NAMESPACE_NAME_LABEL)))
        if not satisfiable(pods):
            continue
        excluded = tuple(sorted({v for r in ns for v in r.values}))
        peer = Peer((Requirement(NAMESPACE_NAME_LABEL, NOT_IN, excluded),) if excluded else (), pods)
        if peer not in peers:
            peers.append(peer)
    return [p for p in peers if not any(q != p and q.covers(p) for q in peers)]


def satisfiable(requirements: tuple[Requirement, ...]) -> bool:
    """False when some labels can satisfy no pod (`k In (a)` with `k NotIn (a)`, `Exists` with `DoesNotExist`, …)."""
    by_key: dict[str, list[Requirement]] = {}
    for r in requirements:
        by_key.setdefault(r.key, []).append(r)
    for reqs in by_key.values():
        ops = {r.operator for r in reqs}
        if EXISTS in ops and DOES_NOT_EXIST in ops:
            return False
        allowed: set[str] | None = None
        for r in reqs:
            if r.operator == IN:
                allowed = set(r.values) if allowed is None else allowed & set(r.values)
        if allowed is None:
            continue
        if DOES_NOT_EXIST in ops:
            return False
        for r in reqs:
            if r.operator == NOT_IN:
                allowed -= set(r.values)
        if not allowed:
            return False
    return True
