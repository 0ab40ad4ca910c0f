"""The NetworkPolicies of a partition, as pure functions (no API calls here).

NetworkPolicies are additive allow-lists: once any policy selects a pod for a direction, only what
some policy allows gets through. So "partition A from B" for pods that had no policy is written as
one policy per group of A whose allow-list is *everything except B*:

* every pod in every namespace except B's pods (`pod_groups.complement`: a namespaceSelector on
  every peer, `NotIn`/`DoesNotExist` for the negations — never a bare podSelector, which would mean
  "this namespace only" and silently cut all cross-namespace traffic, the reference's defect);
* every address outside the cluster's pod networks (`ipBlock` 0.0.0.0/0 and ::/0 *except* the pod
  CIDRs: ipBlock may or may not match pod IPs depending on the CNI, so pod addresses are excluded
  there and allowed only through the label-based peers above);
* egress only: DNS (UDP and TCP 53) to anywhere, and the API server's addresses.

Traffic that is neither to nor from B is therefore allowed exactly as before, whatever the CNI. A
direction of `egress` stops A from opening connections to B; `ingress` stops B from opening
connections to A; `both` does both. Only A's pods carry policies, so B (NATS in another namespace,
say) is never touched.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from steps.errors import BadInput
from steps.kube import objects as o
from steps.network.objects import POLICY_API, metadata
from steps.network.selectors import PodGroup, complement, label_selector

# Partition type → (role of the pods that get the policies, role of the pods they are cut from).
PARTITIONS = {
    "frontend-worker": ("frontend", "worker"),
    "worker-worker": ("worker", "worker"),
    "prefill-decode": ("prefill", "decode"),
    "worker-nats": ("worker", "nats"),
    "frontend-nats": ("frontend", "nats"),
    "custom": ("custom", "custom"),
}
DIRECTIONS = ("egress", "ingress", "both")
DNS_PORTS = ({"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53})
FAULT = "network-partition"


@dataclass(frozen=True)
class ClusterAddresses:
    """What only the cluster knows: which addresses are pods, and where the API server listens."""

    pod_cidrs: tuple[str, ...]
    api_server: tuple[str, ...] = ()


@dataclass
class Partition:
    kind: str  # a PARTITIONS key
    direction: str
    sources: list[PodGroup]
    blocked: list[PodGroup]
    extra: dict = field(default_factory=dict)  # recorded with the policies (e.g. include_etcd)


def normalise_cidrs(values: list[str]) -> tuple[str, ...]:
    out = []
    for value in values:
        try:
            network = ipaddress.ip_network(str(value).strip(), strict=False)
        except ValueError:
            raise BadInput(f"{value!r} is not a CIDR") from None
        if network.prefixlen == 0:
            raise BadInput(f"pod CIDR {value!r} covers every address")
        out.append(str(network))
    return tuple(sorted(set(out)))


def pod_cidrs_of(nodes: list[dict]) -> tuple[str, ...]:
    """The pod networks the nodes were given (`spec.podCIDRs`, or the older single `podCIDR`)."""
    found = []
    for node in nodes:
        spec = node.get("spec") or {}
        found.extend(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    return normalise_cidrs(found) if found else ()


def api_server_addresses(service: dict | None, endpoint_slices: list[dict]) -> tuple[str, ...]:
    """The `default/kubernetes` Service's cluster IPs and its endpoints (the addresses traffic has after
    kube-proxy's DNAT, which is what most CNIs apply egress policy to)."""
    found = list(o.spec(service or {}).get("clusterIPs") or [])
    for eps in endpoint_slices:
        for endpoint in eps.get("endpoints") or []:
            found.extend(endpoint.get("addresses") or [])
    return tuple(sorted({str(ipaddress.ip_address(a)) for a in found if a and a != "None"}))


def off_cluster_blocks(pod_cidrs: tuple[str, ...]) -> list[dict]:
    v4 = [c for c in pod_cidrs if ipaddress.ip_network(c).version == 4]
    v6 = [c for c in pod_cidrs if ipaddress.ip_network(c).version == 6]
    blocks = []
    for cidr, excluded in (("0.0.0.0/0", v4), ("::/0", v6)):
        block: dict = {"cidr": cidr}
        if excluded:
            block["except"] = excluded
        blocks.append({"ipBlock": block})
    return blocks


def host_block(address: str) -> dict:
    ip = ipaddress.ip_address(address)
    return {"ipBlock": {"cidr": f"{ip}/{ip.max_prefixlen}"}}


def policy_name(run_id: str, kind: str, index: int) -> str:
    return f"faultflow-{run_id}-{kind}-{index}"


def build_policies(run_id: str, partition: Partition, addresses: ClusterAddresses) -> list[dict]:
    """One NetworkPolicy per source group (a policy has one podSelector), in the source's namespace."""
    if not addresses.pod_cidrs:
        raise BadInput("the cluster's pod CIDRs are unknown (no node has spec.podCIDRs): pass --pod-cidr")
    allowed = [p.to_network_policy_peer() for p in complement(partition.blocked)] + off_cluster_blocks(addresses.pod_cidrs)
    types = {"egress": ["Egress"], "ingress": ["Ingress"], "both": ["Ingress", "Egress"]}[partition.direction]
    blocked_text = "; ".join(f"{g.namespace}/{g.selector_string()}" for g in partition.blocked)
    policies = []
    for index, source in enumerate(partition.sources):
        spec: dict = {"podSelector": label_selector(source.requirements), "policyTypes": types}
        if "Egress" in types:
            spec["egress"] = [{"to": allowed}, {"ports": [dict(p) for p in DNS_PORTS]}]
            if addresses.api_server:
                spec["egress"].append({"to": [host_block(a) for a in addresses.api_server]})
        if "Ingress" in types:
            spec["ingress"] = [{"from": allowed}]
        meta = metadata(
            policy_name(run_id, partition.kind, index),
            source.namespace,
            run_id,
            FAULT,
            {
                "faultflow.dev/partition": partition.kind,
                "faultflow.dev/direction": partition.direction,
                "faultflow.dev/blocks": blocked_text,
            },
        )
        policies.append({"apiVersion": POLICY_API, "kind": "NetworkPolicy", "metadata": meta, "spec": spec})
    return policies
