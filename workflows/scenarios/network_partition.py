"""`network-partition`: cut one path of the Dynamo graph (NetworkPolicy), hold, heal, verify."""

from __future__ import annotations

from workflows.declaration import Param, Parameter, Scenario
from workflows.stages import network as ns
from workflows.stages.common import (
    ABORT_IF,
    HOLD,
    INFERENCE_PARAMETERS,
    PROMETHEUS_URL,
    TARGET_PARAMETERS,
    gate_stage,
    hold_stage,
    load_stage,
    recover_stage,
    report_stage,
    watch_abort_stage,
)

NAME = "network-partition"
DEADLINE_S = 2 * 3600

PARTITION = Parameter(
    "partition",
    "frontend-worker",
    "Which path to cut.",
    ("frontend-worker", "worker-worker", "prefill-decode", "worker-nats", "frontend-nats"),
)
DIRECTION = Parameter("direction", "both", "Traffic direction to block.", ("ingress", "egress", "both"))
POD_CIDR = Parameter(
    "pod-cidr",
    "",
    "The cluster's pod network(s), comma-separated; empty: the nodes' spec.podCIDRs "
    "(set it where the CNI assigns addresses without them, e.g. Calico or Cilium cluster-pool IPAM).",
)

SCENARIO = Scenario(
    name=NAME,
    title="Network partition: cut one path of the Dynamo graph",
    description=(
        "NetworkPolicies (selected by the DGD name and component type, so recreated pods stay cut off) "
        "block one path — frontend/workers, prefill/decode, workers/NATS — keeping DNS and the API server "
        "reachable; holds, heals and measures inference."
    ),
    parameters=(*TARGET_PARAMETERS, PARTITION, DIRECTION, POD_CIDR, ns.DURATION, HOLD, *INFERENCE_PARAMETERS, PROMETHEUS_URL, ABORT_IF),
    stages=(
        load_stage(DEADLINE_S),
        watch_abort_stage(DEADLINE_S),
        ns.preflight(),
        gate_stage(after="preflight"),
        ns.inject(
            "partition-network",
            "Creates the run's NetworkPolicies (ledger first).",
            ("--partition", Param("partition"), "--direction", Param("direction"), "--pod-cidr", Param("pod-cidr")),
        ),
        ns.verify_partition(after="partition-network"),
        hold_stage(after="verify-partition"),
        ns.heal("heal-network", after=("hold",)),
        recover_stage(after="heal-network"),
    ),
    exit_stages=(ns.heal("final-cleanup"), report_stage(NAME)),
    mutexes=ns.NETWORK_MUTEXES,
    deadline_s=DEADLINE_S,
)
