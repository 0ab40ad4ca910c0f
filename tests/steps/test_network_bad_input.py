"""Bad input to the network steps: exit 2, one line on stderr, nothing changed — asserted by a
snapshot of everything they could touch (NetworkPolicies, NetworkChaos, pods, ledgers)."""

from __future__ import annotations

import json

import pytest

from steps.kube.client import Ref
from tests.dgd_samples import dgd_v1alpha1, dgd_v1beta1
from tests.steps.bad_input import bad_input_failures
from tests.steps.network_world import POD_CIDR, make_net_world
from tests.support.cluster_world import dgd_ref

P = ["step", "partition-network", "--run-id", "{run}", "--namespace", "{ns}", "--target", "dgd/llm", "--pod-cidr", POD_CIDR]
D = ["step", "degrade-network", "--run-id", "{run}", "--namespace", "{ns}", "--target", "dgd/llm"]
CASES = [
    ("partition type unknown", P + ["--partition", "frontend-everything"]),
    ("direction unknown", P + ["--partition", "worker-nats", "--direction", "sideways"]),
    ("custom without selectors", P + ["--partition", "custom"]),
    ("selector without custom", P + ["--partition", "worker-nats", "--source-selector", "app=web"]),
    ("custom selector malformed", P + ["--partition", "custom", "--source-selector", "app==", "--peer-selector", "a in ()"]),
    ("custom selector empty", P + ["--partition", "custom", "--source-selector", " ", "--peer-selector", "app=x"]),
    ("custom bang with value", P + ["--partition", "custom", "--source-selector", "!app=x", "--peer-selector", "app=x"]),
    ("nats selector malformed", P + ["--partition", "worker-nats", "--nats-selector", "app.kubernetes.io/name in nats"]),
    ("include etcd without nats", P + ["--partition", "frontend-worker", "--include-etcd"]),
    ("pod cidr malformed", P + ["--partition", "worker-nats", "--pod-cidr", "10.0.0.0/33"]),
    ("pod cidr everything", P + ["--partition", "worker-nats", "--pod-cidr", "0.0.0.0/0"]),
    ("pod cidr list with a bad one", P + ["--partition", "worker-nats", "--pod-cidr", "10.244.0.0/16,10.245.0.0/33"]),
    ("duration zero", P + ["--partition", "worker-nats", "--duration", "0s"]),
    (
        "target not a dgd",
        [
            "step",
            "partition-network",
            "--run-id",
            "{run}",
            "--namespace",
            "{ns}",
            "--target",
            "deployment/web",
            "--partition",
            "worker-nats",
        ],
    ),
    (
        "dgd missing",
        [
            "step",
            "partition-network",
            "--run-id",
            "{run}",
            "--namespace",
            "{ns}",
            "--target",
            "dgd/nope",
            "--partition",
            "worker-nats",
            "--pod-cidr",
            POD_CIDR,
        ],
    ),
    (
        "partition without ledger",
        [
            "step",
            "partition-network",
            "--run-id",
            "no-ledger",
            "--namespace",
            "{ns}",
            "--target",
            "dgd/llm",
            "--partition",
            "worker-nats",
            "--pod-cidr",
            POD_CIDR,
        ],
    ),
    ("no prefill component", P + ["--partition", "prefill-decode", "--target", "dgd/agg"]),
    (
        "pod cidrs unknown",
        ["step", "partition-network", "--run-id", "{run}", "--namespace", "{ns}", "--target", "dgd/llm", "--partition", "worker-nats"],
    ),
    ("degrade without action", D),
    ("loss over 100", D + ["--loss", "101"]),
    ("loss zero", D + ["--loss", "0"]),
    ("loss NaN", D + ["--loss", "nan"]),
    ("delay malformed", D + ["--delay", "100 ms"]),
    ("jitter without delay", D + ["--loss", "5", "--jitter", "5ms"]),
    ("action without its value", D + ["--action", "corrupt", "--loss", "5"]),
    ("action unknown", D + ["--action", "reorder", "--loss", "5"]),
    ("bandwidth malformed", D + ["--bandwidth", "fast"]),
    ("bandwidth limit zero", D + ["--bandwidth", "1mbps", "--bandwidth-limit", "0"]),
    ("correlation over 100", D + ["--loss", "5", "--loss-correlation", "150"]),
    ("mode value missing", D + ["--loss", "5", "--mode", "fixed"]),
    ("mode value with all", D + ["--loss", "5", "--mode-value", "3"]),
    ("mode percent over 100", D + ["--loss", "5", "--mode", "fixed-percent", "--mode-value", "120"]),
    ("direction from without peer", D + ["--loss", "5", "--direction", "from"]),
    ("peer custom without selector", D + ["--loss", "5", "--peer", "custom"]),
    ("degrade no decode component", D + ["--loss", "5", "--pods", "decode", "--target", "dgd/agg"]),
    ("heal without ledger", ["step", "heal-network", "--run-id", "no-ledger", "--namespace", "{ns}"]),
    ("verify without ledger", ["step", "verify-partition", "--run-id", "no-ledger", "--namespace", "{ns}"]),
    ("verify probe image blank", ["step", "verify-partition", "--run-id", "{run}", "--namespace", "{ns}", "--probe-image", " "]),
    (
        "preflight network not opted in",
        ["step", "preflight", "--fault", "network", "--run-id", "r2", "--namespace", "{ns2}", "--target", "dgd/llm"],
    ),
    (
        "preflight network with xid",
        ["step", "preflight", "--fault", "network", "--run-id", "r2", "--namespace", "{ns}", "--target", "dgd/llm", "--xid", "79"],
    ),
    (
        "preflight network deployment",
        ["step", "preflight", "--fault", "network", "--run-id", "r2", "--namespace", "{ns}", "--target", "deployment/web"],
    ),
    (
        "preflight gpu without xid",
        ["step", "preflight", "--run-id", "r2", "--namespace", "{ns}", "--target", "dgd/llm", "--expect-remediation=false"],
    ),
]


@pytest.fixture
def world(gpu_cluster, unique):
    w = make_net_world(gpu_cluster, unique)
    agg = dgd_v1beta1(name="agg", namespace=w.ns)
    if gpu_cluster.version == "v1alpha1":
        agg = dgd_v1alpha1(name="agg", namespace=w.ns)
        del agg["spec"]["services"]["VllmPrefillWorker"]
        del agg["spec"]["services"]["VllmDecodeWorker"]["subComponentType"]
    w.kube.create(dgd_ref(agg), agg)
    assert (
        gpu_cluster.faultflow(
            "step", "preflight", "--fault", "network", "--run-id", w.run, "--namespace", w.ns, "--target", "dgd/llm"
        ).returncode
        == 0
    )
    kube = w.kube

    def snapshot() -> str:
        state = {}
        for ns in (w.ns, w.ns2):
            for ref in (
                Ref("networking.k8s.io/v1", "networkpolicies", ns, ""),
                Ref("chaos-mesh.org/v1alpha1", "networkchaos", ns, ""),
                Ref("v1", "pods", ns, ""),
                Ref("v1", "configmaps", ns, ""),
            ):
                state[f"{ns}/{ref.plural}"] = kube.list(ref).get("items")
        return json.dumps(state, sort_keys=True)

    return {"run": w.run, "ns": w.ns, "ns2": w.ns2}, snapshot


def test_network_bad_input_matrix(gpu_cluster, world):
    values, snapshot = world
    failures = bad_input_failures(gpu_cluster, CASES, values, snapshot)
    print(f"network bad-input cases: {len(CASES) - len(failures)} of {len(CASES)} exit 2 with one line and no change")
    assert failures == [], "\n".join(failures)
