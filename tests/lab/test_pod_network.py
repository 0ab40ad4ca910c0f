"""The CNI simulator's address allocation (host-local IPAM over the node's pod CIDR)."""

from __future__ import annotations

import pytest

from lab.pod_network import NODE_ADDRESS, HostLocalIpam
from steps.errors import InfrastructureError


def test_addresses_come_from_the_nodes_range_lowest_free_first() -> None:
    ipam = HostLocalIpam({"gpu-0": "10.244.0.0/24", "gpu-1": "10.244.1.0/24"})
    assert ipam.allocate("gpu-0", "a") == "10.244.0.2"  # .0 is the network, .1 the gateway
    assert ipam.allocate("gpu-0", "b") == "10.244.0.3"
    assert ipam.allocate("gpu-1", "c") == "10.244.1.2"
    assert ipam.allocate("gpu-0", "a") == "10.244.0.2"  # a pod keeps its address
    ipam.release("a")
    assert ipam.allocate("gpu-0", "d") == "10.244.0.2"  # freed with the pod, reused


def test_host_network_and_nodes_without_a_range_use_the_node_address() -> None:
    ipam = HostLocalIpam({"gpu-0": "10.244.0.0/24"})
    assert ipam.allocate("gpu-0", "a", host_network=True) == NODE_ADDRESS
    assert ipam.allocate("cpu-0", "b") == NODE_ADDRESS
    assert ipam.assigned == {}


def test_a_full_range_is_an_error() -> None:
    ipam = HostLocalIpam({"tiny": "10.244.9.0/30"})  # hosts .1 (gateway) and .2
    assert ipam.allocate("tiny", "a") == "10.244.9.2"
    with pytest.raises(InfrastructureError, match="no free address"):
        ipam.allocate("tiny", "b")
