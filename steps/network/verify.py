"""The checks verify-partition runs: objects in place, cut-off pods not allowed by any peer, and the probe pod."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

from steps.errors import CheckFailed
from steps.gpu.toggle_pod import PURPOSE_LABEL, watch_until_finished
from steps.kube import objects as o
from steps.kube.client import Kube, Ref
from steps.network.objects import create_recorded, metadata, ref_of, undo
from steps.network.policies import DNS_PORTS
from steps.network.selectors import (
    EXISTS,
    IN,
    PodGroup,
    Requirement,
    parse_selector,
    requirements_of,
    selector_string,
)
from steps.run import ledger as L

API_SERVER_NAME = "kubernetes.default.svc"


# Runs in the probe pod (any image with python3): connect to each address, report what happened.
PROBE_SCRIPT = """
import json, socket, sys
results = []
for check in json.loads(sys.argv[1]):
    try:
        socket.create_connection((check["host"], check["port"]), timeout=check["timeout"]).close()
        got = "open"
    except OSError as error:
        got = "blocked"
    results.append(dict(check, got=got))
with open("/dev/termination-log", "w") as log:
    log.write(json.dumps(results))
sys.exit(0 if all(r["got"] == r["expect"] for r in results) else 1)
"""


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def pods_of(kube: Kube, namespace: str, selector: str) -> list[dict]:
    return kube.list(Ref("v1", "pods", namespace, ""), label_selector=selector or None).get("items") or []


def allowed_by_peers(kube: Kube, policy_namespace: str, peers: list[dict], namespaces: set[str]) -> set[tuple[str, str]]:
    """(namespace, pod) of every pod in `namespaces` some label peer allows — the API server evaluates
    each peer's namespaceSelector and podSelector. A peer without a namespaceSelector means the
    policy's own namespace only (NetworkPolicy semantics)."""
    allowed = set()
    for peer in peers:
        if "namespaceSelector" not in peer and "podSelector" not in peer:
            continue  # an ipBlock
        if "namespaceSelector" in peer:
            ns_selector = selector_string(requirements_of(peer["namespaceSelector"]))
            listed = kube.list(Ref("v1", "namespaces", None, ""), label_selector=ns_selector or None).get("items") or []
            matching = {n["metadata"]["name"] for n in listed}
        else:
            matching = {policy_namespace}
        for ns in matching & namespaces:
            pod_selector = selector_string(requirements_of(peer.get("podSelector") or {}))
            allowed |= {(ns, p["metadata"]["name"]) for p in pods_of(kube, ns, pod_selector)}
    return allowed


def ip_allowed(ip: str, peers: list[dict]) -> bool:
    address = ipaddress.ip_address(ip)
    for peer in peers:
        block = peer.get("ipBlock")
        if block and address.version == ipaddress.ip_network(block["cidr"]).version and address in ipaddress.ip_network(block["cidr"]):
            if not any(address in ipaddress.ip_network(c) for c in block.get("except") or []):
                return True
    return False


def check_policy(kube: Kube, entry: L.Entry, live: dict) -> tuple[list[Check], list[dict], list[dict]]:
    """Checks of one live policy; also returns the pods it selects and the pods it cuts off."""
    namespace, spec, name = live["metadata"]["namespace"], live["spec"], live["metadata"]["name"]
    sources = pods_of(kube, namespace, selector_string(requirements_of(spec["podSelector"])))
    groups = [PodGroup(g["namespace"], parse_selector(g["selector"])) for g in entry.data.get("blocked") or []]
    blocked = [p for g in groups for p in pods_of(kube, g.namespace, g.selector_string())]
    checks = [
        Check(f"{name}:selects_pods", bool(sources), f"{len(sources)} pods selected"),
        Check(f"{name}:peers_exist", bool(blocked), f"{len(blocked)} pods to cut off"),
    ]
    for rules, key in ((spec.get("egress"), "to"), (spec.get("ingress"), "from")):
        if rules is None:
            continue
        peers = [peer for rule in rules if "ports" not in rule for peer in rule.get(key) or []]
        through = allowed_by_peers(kube, namespace, peers, {g.namespace for g in groups})
        leaks = [
            p["metadata"]["name"]
            for p in blocked
            if (p["metadata"]["namespace"], p["metadata"]["name"]) in through
            or (o.status(p).get("podIP") and ip_allowed(p["status"]["podIP"], peers))
        ]
        checks.append(Check(f"{name}:{key}_cut", not leaks, f"allowed: {', '.join(sorted(leaks))}" if leaks else "none of them allowed"))
    if spec.get("egress") is not None:
        dns = any(
            not rule.get("to") and sorted(map(json.dumps, rule.get("ports") or [])) == sorted(map(json.dumps, DNS_PORTS))
            for rule in spec["egress"]
        )
        checks.append(Check(f"{name}:dns_allowed", dns, "UDP and TCP 53 to anywhere" if dns else "no DNS rule"))
        service = kube.get_or_none(Ref("v1", "services", "default", "kubernetes")) or {}
        addresses = o.spec(service).get("clusterIPs") or []
        api_peers = [peer for rule in spec["egress"] for peer in rule.get("to") or []]
        missing = [a for a in addresses if not ip_allowed(a, api_peers)]
        checks.append(Check(f"{name}:api_server_allowed", not missing, f"not allowed: {missing}" if missing else "allowed"))
    return checks, sources, blocked


def check_chaos(kube: Kube, live: dict) -> list[Check]:
    name, selector = live["metadata"]["name"], live["spec"]["selector"]
    reqs = tuple(Requirement(k, IN, (v,)) for k, v in sorted((selector.get("labelSelectors") or {}).items()))
    reqs += requirements_of({"matchExpressions": selector.get("expressionSelectors") or []})
    pods = [p for ns in selector.get("namespaces") or [] for p in pods_of(kube, ns, selector_string(reqs))]
    return [Check(f"{name}:selects_pods", bool(pods), f"{len(pods)} pods selected")]


def probe_labels(pod_selector: dict) -> dict:
    """Labels that make a pod match the selector (the first value of an In; a placeholder for Exists)."""
    labels = {}
    for r in requirements_of(pod_selector):
        if r.operator == IN:
            labels[r.key] = r.values[0]
        elif r.operator == EXISTS:
            labels[r.key] = "faultflow-probe"
    return labels


def probe_pod(run_id: str, policy: dict, image: str, target: tuple[str, int], timeout_s: float) -> dict:
    """A short pod the partition applies to (it carries the partitioned pods' labels): the connection
    to a cut-off pod must fail, the API server by name (DNS, then the allowed address) must work."""
    checks = [
        {"host": target[0], "port": target[1], "expect": "blocked", "timeout": 3},
        {"host": API_SERVER_NAME, "port": 443, "expect": "open", "timeout": 5},
    ]
    meta = metadata(
        f"faultflow-probe-{policy['metadata']['name'][len('faultflow-') :]}"[:63].rstrip("-"),
        policy["metadata"]["namespace"],
        run_id,
        "network-probe",
    )
    meta["labels"] = {**probe_labels(policy["spec"]["podSelector"]), **meta["labels"], PURPOSE_LABEL: "network-probe"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "activeDeadlineSeconds": max(1, int(timeout_s)),
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "command": ["python3", "-c", PROBE_SCRIPT, json.dumps(checks)],
                    "terminationMessagePolicy": "File",
                    "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65534},
                }
            ],
        },
    }


def probe_target(blocked: list[dict], port: int | None) -> tuple[str, int] | None:
    """A cut-off pod's IP and a port it serves (its first containerPort unless --probe-port)."""
    for pod in blocked:
        ip = o.status(pod).get("podIP")
        ports = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []]
        if ip and (port or ports):
            return ip, port or ports[0]
    return None


def run_probe(kube: Kube, store: L.LedgerStore, run: L.RunInfo, pod: dict, timeout_s: float) -> Check:
    created: list[str] = []
    try:
        create_recorded(kube, store, run, [pod], None, created=created)
        finished = watch_until_finished(kube, ref_of(pod), timeout_s)
    except CheckFailed as error:
        return Check(f"{pod['metadata']['name']}:probe", False, str(error))
    finally:
        undo(kube, store, run, created)
    statuses = o.status(finished).get("containerStatuses") or [{}]
    message = ((statuses[0].get("state") or {}).get("terminated") or {}).get("message") or "[]"
    try:
        results = json.loads(message)
    except ValueError:
        results = []
    passed = finished["status"].get("phase") == "Succeeded" and bool(results) and all(r.get("got") == r.get("expect") for r in results)
    detail = "; ".join(f"{r.get('host')}:{r.get('port')} {r.get('got')} (expected {r.get('expect')})" for r in results) or "no result"
    return Check(f"{pod['metadata']['name']}:probe", passed, detail)
