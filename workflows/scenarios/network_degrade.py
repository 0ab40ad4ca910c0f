"""`network-degrade`: loss / delay / bandwidth / corruption / duplication on the workers' traffic
(Chaos Mesh NetworkChaos), hold, heal, verify."""

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

NAME = "network-degrade"
DEADLINE_S = 2 * 3600

ACTION = Parameter("action", "delay", "NetworkChaos action.", ("loss", "delay", "bandwidth", "corrupt", "duplicate"))
MODE = Parameter(
    "mode", "all", "Blast radius among the selected pods (Chaos Mesh mode).", ("one", "all", "fixed", "fixed-percent", "random-max-percent")
)
DELAY = Parameter("latency", "200ms", "delay: added latency.")
JITTER = Parameter("jitter", "20ms", "delay: jitter.")
LOSS = Parameter("loss", "10", "loss / corrupt / duplicate: percent of packets.")
BANDWIDTH = Parameter("rate", "10mbps", "bandwidth: rate limit.")

SCENARIO = Scenario(
    name=NAME,
    title="Network degradation: delay, loss, bandwidth (Chaos Mesh)",
    description=(
        "Chaos Mesh NetworkChaos on the GPU workers (correct selector schema, mode for the blast radius, "
        "duration enforced by Chaos Mesh): holds, heals and measures inference."
    ),
    parameters=(
        *TARGET_PARAMETERS,
        ACTION,
        MODE,
        DELAY,
        JITTER,
        LOSS,
        BANDWIDTH,
        ns.DURATION,
        HOLD,
        *INFERENCE_PARAMETERS,
        PROMETHEUS_URL,
        ABORT_IF,
    ),
    stages=(
        load_stage(DEADLINE_S),
        watch_abort_stage(DEADLINE_S),
        ns.preflight(),
        gate_stage(after="preflight"),
        ns.inject(
            "degrade-network",
            "Creates the run's NetworkChaos objects (ledger first).",
            (
                "--action",
                Param("action"),
                "--mode",
                Param("mode"),
                "--latency",
                Param("latency"),
                "--jitter",
                Param("jitter"),
                "--loss",
                Param("loss"),
                "--corrupt",
                Param("loss"),
                "--duplicate",
                Param("loss"),
                "--rate",
                Param("rate"),
            ),
        ),
        hold_stage(after="degrade-network"),
        ns.heal("heal-network", after=("hold",)),
        recover_stage(after="heal-network"),
    ),
    exit_stages=(ns.heal("final-cleanup"), report_stage(NAME)),
    mutexes=ns.NETWORK_MUTEXES,
    deadline_s=DEADLINE_S,
)
