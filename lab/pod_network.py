"""CNI SIMULATOR (IP addresses only): gives each pod an address inside its node's pod CIDR.

Every lab process listens on loopback, so no packet ever uses these addresses; they exist because
faultflow reasons about them. A NetworkPolicy's `ipBlock` rules are written against the cluster's pod
CIDRs (`spec.podCIDRs` of the nodes), and verify-partition checks that no partitioned pod's IP is
allowed by them — which only means something when pod IPs lie inside those CIDRs, as on a real
cluster.

The contract copied is the one of CNI's `host-local` IPAM plugin as used with the node's podCIDR
(what kubenet, flannel and bridge-based CNIs do): addresses come from the node's range, skipping the
network address and the gateway (the range's first host), lowest free first; a pod keeps its address
while its sandbox lives (container restarts included) and it is freed when the pod is gone. A pod on
a node with no pod CIDR, or with `hostNetwork`, has the node's address.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field

from steps.errors import InfrastructureError

NODE_ADDRESS = "127.0.0.1"  # every lab node's InternalIP (lab.gpu_nodes)


@dataclass
class HostLocalIpam:
    ranges: dict[str, str]  # node name → pod CIDR
    assigned: dict[str, str] = field(default_factory=dict)  # pod uid → address
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allocate(self, node: str, uid: str, host_network: bool = False) -> str:
        """The pod's address (the same one again for a uid that has one)."""
        cidr = self.ranges.get(node)
        if host_network or not cidr:
            return NODE_ADDRESS
        with self.lock:
            if uid in self.assigned:
                return self.assigned[uid]
            network = ipaddress.ip_network(cidr)
            used = set(self.assigned.values())
            hosts = network.hosts()
            next(hosts, None)  # the gateway (the bridge's address on the node)
            for address in hosts:
                if str(address) not in used:
                    self.assigned[uid] = str(address)
                    return str(address)
        raise InfrastructureError(f"no free address left in pod CIDR {cidr} of node {node}")

    def release(self, uid: str) -> None:
        with self.lock:
            self.assigned.pop(uid, None)
