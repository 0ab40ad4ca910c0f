"""What the installation (deploy/, rendered by workflows/) and the steps agree on by name: faultflow's
namespace, the ConfigMap `faultflow-config` and its keys, and the labels of the nightly suite's child
Workflows. A leaf module (no imports), so that workflows/ may name these without importing the steps'
cluster code (the `workflows-narrow` import contract); `steps.run.install` and
`steps.commands.suite_gate` use the same names from here."""

from __future__ import annotations

DEFAULT_NAMESPACE = "faultflow"
NAMESPACE_ENV = "FAULTFLOW_NAMESPACE"
CONFIG_NAME = "faultflow-config"
# Keys of the ConfigMap (deploy/config.yaml).
STEPS_IMAGE, SHIM_IMAGE, TOGGLE_DIR = "steps-image", "shim-image", "toggle-dir"
# The image of the pods that run on a node (inject-xid, `shim on`, the toggle-off pod): images/node-agent.
NODE_AGENT_IMAGE = "node-agent-image"

# The nightly suite's child Workflows: which suite run started them, and which scenario each one is.
SUITE_RUN_LABEL = "faultflow.dev/suite-run"
SCENARIO_LABEL = "faultflow.dev/scenario"


def config_object(namespace: str, steps_image: str, shim_image: str, toggle_dir: str, node_agent_image: str) -> dict:
    """The ConfigMap as deploy/ writes it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_NAME, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "faultflow"}},
        "data": {STEPS_IMAGE: steps_image, SHIM_IMAGE: shim_image, NODE_AGENT_IMAGE: node_agent_image, TOGGLE_DIR: toggle_dir},
    }


# The cluster-wide halt (`faultflow halt`): in force while this ConfigMap exists in faultflow's
# namespace. No faultflow ServiceAccount may delete ConfigMaps there, so only an admin lifts it.
HALT_NAME = "faultflow-halt"
