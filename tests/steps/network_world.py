"""Pods as the Dynamo operator labels them, around a real DGD, for the network-step tests.

The operator (which cannot run here) creates one Deployment per component whose pods carry
`nvidia.com/dynamo-graph-deployment-name`, `nvidia.com/dynamo-component-type`,
`nvidia.com/dynamo-sub-component-type` (v1alpha1 `subComponentType`), `nvidia.com/dynamo-component`
and a per-rollout `pod-template-hash`. `operator_pods_simulator` creates exactly such Pods (the
contract the partition selectors depend on) and gives each a pod IP, as the kubelet would.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

from steps.kube.client import Kube, Ref
from steps.workload import dynamo as dgd
from steps.workload.dynamo import COMPONENT_LABEL, COMPONENT_TYPE_LABEL, DGD_NAME_LABEL, SUB_COMPONENT_TYPE_LABEL
from tests.dgd_samples import dgd_v1alpha1
from tests.support.cluster_world import dgd_ref, make_namespace

POD_CIDR = "10.244.0.0/16"
_ips = itertools.count(2)


def dgd_v1beta1_disagg(name: str, namespace: str) -> dict:
    """A disaggregated v1beta1 graph: frontend, prefill and decode components."""

    def component(cname, ctype, gpu):
        container = {"name": "main", "image": "runtime:1", "ports": [{"containerPort": 8000}]}
        if gpu:
            container["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
        return {"name": cname, "type": ctype, "replicas": 2, "podTemplate": {"spec": {"containers": [container]}}}

    return {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backendFramework": "vllm",
            "components": [
                component("Frontend", "frontend", False),
                component("prefill", "prefill", True),
                component("decode", "decode", True),
            ],
        },
    }


def make_pod(kube: Kube, namespace: str, name: str, labels: dict, port: int = 8000) -> dict:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "runtime:1", "ports": [{"containerPort": port}]}]},
    }
    kube.create(Ref("v1", "pods", namespace, ""), body)
    n = next(_ips)
    ip = f"10.244.{n // 250}.{n % 250 + 1}"
    kube.request(
        "PATCH",
        f"/api/v1/namespaces/{namespace}/pods/{name}/status",
        content_type="application/merge-patch+json",
        body={"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}},
    )
    return kube.get(Ref("v1", "pods", namespace, name))


def operator_pods_simulator(kube: Kube, obj: dict, namespace: str | None = None, dgd_name: str | None = None) -> dict[str, set]:
    """Two pods per component of `obj`, labelled as the operator labels them. Returns role → pod names."""
    namespace = namespace or obj["metadata"]["namespace"]
    name = dgd_name or obj["metadata"]["name"]
    roles: dict[str, set] = {"frontend": set(), "worker": set(), "prefill": set(), "decode": set()}
    for comp in dgd.components(obj):
        sub = ""
        if "services" in obj["spec"]:
            sub = obj["spec"]["services"][comp.name].get("subComponentType") or ""
        labels = {
            DGD_NAME_LABEL: name,
            COMPONENT_TYPE_LABEL: comp.type,
            COMPONENT_LABEL: comp.name,
            "pod-template-hash": uuid.uuid4().hex[:10],
        }
        if sub:
            labels[SUB_COMPONENT_TYPE_LABEL] = sub
        for _ in range(2):
            pod = f"{name}-{comp.name.lower()}-{uuid.uuid4().hex[:5]}"
            make_pod(kube, namespace, pod, labels)
            if comp.type == "frontend":
                roles["frontend"].add(pod)
            if comp.type in dgd.GPU_WORKER_TYPES:
                roles["worker"].add(pod)
            for role in ("prefill", "decode"):
                if comp.type == role or sub == role:
                    roles[role].add(pod)
    return roles


@dataclass
class NetWorld:
    kube: Kube
    ns: str  # the DGD's namespace
    ns2: str  # a second namespace ("platform"): etcd, NATS, and look-alike pods
    run: str
    roles: dict[str, set]
    pods: dict[str, set] = field(default_factory=dict)  # "nats", "nats2", "etcd2", "web", "other", "lookalike2"

    def universe(self) -> set[tuple[str, str]]:
        out = set()
        for ns in (self.ns, self.ns2):
            out |= {(ns, p["metadata"]["name"]) for p in self.kube.list(Ref("v1", "pods", ns, "")).get("items") or []}
        return out

    def in_ns(self, names: set, ns: str | None = None) -> set[tuple[str, str]]:
        return {(ns or self.ns, n) for n in names}


def make_net_world(cluster, unique: str) -> NetWorld:
    """A DGD `llm` (v1alpha1: frontend, decode worker, prefill; v1beta1: frontend, prefill, decode) with
    its pods, a look-alike DGD's pods, NATS, a web pod, and in a second namespace etcd, NATS and pods
    with the DGD's own labels (which no partition of `llm` in the first namespace may touch)."""
    kube = cluster.kube()
    ns, ns2 = f"net-{unique}", f"plat-{unique}"
    make_namespace(kube, ns)
    make_namespace(kube, ns2, opted_in=False)
    sample = dgd_v1alpha1(name="llm", namespace=ns) if cluster.version == "v1alpha1" else dgd_v1beta1_disagg("llm", ns)
    kube.create(dgd_ref(sample), sample)
    world = NetWorld(kube, ns, ns2, f"run-{unique}", operator_pods_simulator(kube, sample))
    other = operator_pods_simulator(kube, sample, dgd_name="other")
    world.pods["other"] = set().union(*other.values())
    lookalike = operator_pods_simulator(kube, sample, namespace=ns2)
    world.pods["lookalike2"] = set().union(*lookalike.values())
    world.pods["nats"] = {make_pod(kube, ns, "nats-0", {"app.kubernetes.io/name": "nats"}, 4222)["metadata"]["name"]}
    world.pods["web"] = {make_pod(kube, ns, "web-0", {"app": "web"}, 80)["metadata"]["name"]}
    world.pods["nats2"] = {make_pod(kube, ns2, "nats-0", {"app.kubernetes.io/name": "dynamo-platform-nats"}, 4222)["metadata"]["name"]}
    world.pods["etcd2"] = {make_pod(kube, ns2, "etcd-0", {"app.kubernetes.io/name": "etcd"}, 2379)["metadata"]["name"]}
    return world
