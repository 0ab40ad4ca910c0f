"""The pure parts of the network steps: selector syntax, the complement, policy and chaos shapes."""

from __future__ import annotations

import pytest

from steps.errors import BadInput
from steps.network.chaos import Degradation, build_chaos, go_duration
from steps.network.policies import ClusterAddresses, Partition, api_server_addresses, build_policies, pod_cidrs_of
from steps.network.selectors import (
    DOES_NOT_EXIST,
    EXISTS,
    IN,
    NOT_IN,
    PodGroup,
    Requirement,
    complement,
    equals,
    parse_selector,
    role_groups,
    satisfiable,
    selector_string,
)
from steps.run import ledger as L
from steps.run.janitor import expired_entries
from tests.dgd_samples import dgd_v1alpha1, dgd_v1beta1


def test_parse_selector_reads_every_form_and_renders_it_back():
    reqs = parse_selector("a=b, c!=d ,e in (g,f),h notin (i),j,!k,l==m,x.io/n=")
    assert reqs == (
        equals("a", "b"),
        Requirement("c", NOT_IN, ("d",)),
        Requirement("e", IN, ("f", "g")),
        Requirement("h", NOT_IN, ("i",)),
        Requirement("j", EXISTS),
        Requirement("k", DOES_NOT_EXIST),
        equals("l", "m"),
        equals("x.io/n", ""),
    )
    assert selector_string(reqs) == "a=b,c notin (d),e in (f,g),h notin (i),j,!k,l=m,x.io/n="


@pytest.mark.parametrize("text", ["", " , ", "a in ()", "a in b", "!a=b", "a=b=c", "Bad Key=x", "a=-x-", "a=(b)"])
def test_parse_selector_refuses(text):
    with pytest.raises(BadInput):
        parse_selector(text)


def test_satisfiable():
    assert not satisfiable((equals("a", "x"), Requirement("a", NOT_IN, ("x",))))
    assert not satisfiable((Requirement("a", EXISTS), Requirement("a", DOES_NOT_EXIST)))
    assert not satisfiable((equals("a", "x"), Requirement("a", DOES_NOT_EXIST)))
    assert not satisfiable((equals("a", "x"), equals("a", "y")))
    assert satisfiable((Requirement("a", IN, ("x", "y")), Requirement("a", NOT_IN, ("x",))))


def test_complement_of_two_groups_is_a_union_of_conjunctions():
    g1 = PodGroup("ns1", (equals("app", "nats"),))
    g2 = PodGroup("ns2", (equals("app", "etcd"),))
    peers = complement([g1, g2])
    # not(ns1 & nats) & not(ns2 & etcd), multiplied out; (app NotIn nats & app NotIn etcd) stays.
    assert len(peers) == 4
    assert all(p.to_network_policy_peer().get("namespaceSelector") is not None for p in peers)  # never "this namespace only"
    both_ns = [p for p in peers if not p.pods]
    assert both_ns[0].namespace == (Requirement("kubernetes.io/metadata.name", NOT_IN, ("ns1", "ns2")),)


def test_complement_drops_terms_that_match_nothing():
    g = PodGroup("ns", (equals("app", "a"),))
    h = PodGroup("ns", (Requirement("app", NOT_IN, ("a",)),))
    assert all(satisfiable(p.pods) for p in complement([g, h]))
    assert len(complement([g, h])) == 1  # only "other namespaces" remains: together they cover the whole namespace


def test_role_groups_follow_the_operator_labels():
    alpha = dgd_v1alpha1("llm", "ns")
    (workers,) = role_groups(alpha, "worker")
    assert workers.selector_string() == ("nvidia.com/dynamo-graph-deployment-name=llm,nvidia.com/dynamo-component-type in (prefill,worker)")
    assert [g.selector_string().split(",", 1)[1] for g in role_groups(alpha, "decode")] == [
        "nvidia.com/dynamo-component-type=worker,nvidia.com/dynamo-sub-component-type=decode"
    ]
    with pytest.raises(BadInput, match="no prefill component"):
        role_groups(dgd_v1beta1("agg", "ns"), "prefill")


def test_policies_keep_dns_api_and_off_cluster_and_have_run_unique_names():
    groups = role_groups(dgd_v1beta1("agg", "ns"), "worker")
    part = Partition("worker-nats", "egress", groups, [PodGroup("ns", parse_selector("app=nats"))])
    addresses = ClusterAddresses(pod_cidrs=("10.244.0.0/16", "fd00::/48"), api_server=("10.0.0.1", "192.168.1.10"))
    (policy,) = build_policies("run-a", part, addresses)
    (other,) = build_policies("run-b", part, addresses)
    assert policy["metadata"]["name"] != other["metadata"]["name"]
    assert policy["metadata"]["labels"][L.RUN_LABEL] == "run-a"
    egress = policy["spec"]["egress"]
    assert {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16"]}} in egress[0]["to"]
    assert {"ipBlock": {"cidr": "::/0", "except": ["fd00::/48"]}} in egress[0]["to"]
    assert egress[1] == {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    assert egress[2] == {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "192.168.1.10/32"}}]}
    assert "ingress" not in policy["spec"] and policy["spec"]["policyTypes"] == ["Egress"]
    with pytest.raises(BadInput, match="pod CIDRs"):
        build_policies("run-a", part, ClusterAddresses(pod_cidrs=()))


def test_cluster_addresses_from_nodes_service_and_endpoint_slices():
    nodes = [{"spec": {"podCIDRs": ["10.244.1.0/24", "fd00:1::/64"]}}, {"spec": {"podCIDR": "10.244.2.0/24"}}, {"spec": {}}]
    assert pod_cidrs_of(nodes) == ("10.244.1.0/24", "10.244.2.0/24", "fd00:1::/64")
    service = {"spec": {"clusterIPs": ["10.96.0.1"]}}
    slices = [{"endpoints": [{"addresses": ["172.18.0.2"]}, {"addresses": ["172.18.0.3"]}]}]
    assert api_server_addresses(service, slices) == ("10.96.0.1", "172.18.0.2", "172.18.0.3")


def test_chaos_one_object_per_action_and_group():
    d = Degradation(loss=50, delay="10ms", duplicate=1)
    sources = [PodGroup("ns", parse_selector("a=b")), PodGroup("ns", parse_selector("c in (d,e)"))]
    objs = build_chaos("r", sources, [PodGroup("p", parse_selector("app=nats"))], d, "one", None, "to", 90.5)
    assert [o["spec"]["action"] for o in objs] == ["loss", "loss", "delay", "delay", "duplicate", "duplicate"]
    assert len({o["metadata"]["name"] for o in objs}) == 6
    assert objs[1]["spec"]["selector"] == {
        "namespaces": ["ns"],
        "expressionSelectors": [{"key": "c", "operator": "In", "values": ["d", "e"]}],
    }
    assert objs[0]["spec"]["target"] == {"mode": "all", "selector": {"namespaces": ["p"], "labelSelectors": {"app": "nats"}}}
    assert objs[0]["spec"]["duration"] == "90500ms" and go_duration(60) == "60s"


def test_janitor_sweeps_only_expired_created_objects():
    now = L.now_ms()
    run = L.RunInfo(run_id="r", namespace="ns", created_ms=now, ttl_s=3600)
    entries = {
        "netpol-old": L.Entry("netpol-old", L.NETWORK_POLICY, {}, L.APPLIED, data={"expires_ms": now - 1}),
        "netpol-new": L.Entry("netpol-new", L.NETWORK_POLICY, {}, L.APPLIED, data={"expires_ms": now + 60_000}),
        "chaos-done": L.Entry("chaos-done", L.NETWORK_CHAOS, {}, L.REVERTED, data={"expires_ms": now - 1}),
        "toggle-n": L.Entry("toggle-n", L.NODE_TOGGLE, {"node": "n"}, L.APPLIED, data={"expires_ms": now - 1}),
    }
    assert expired_entries(L.Ledger(run, entries), now) == {"netpol-old"}


def test_only_keeps_the_chosen_actions_as_a_ui_passes_every_value():
    d = Degradation(loss=10, delay="200ms", jitter="20ms", bandwidth="10mbps", corrupt=10, duplicate=10)
    assert [a for a, _ in d.only(("loss",)).actions()] == ["loss"]
    assert d.only(("delay",)).actions() == [("delay", {"latency": "200ms", "jitter": "20ms", "correlation": "0"})]
    with pytest.raises(BadInput, match="--action corrupt needs"):
        Degradation(loss=10).only(("corrupt",))
