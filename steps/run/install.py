"""The installation's own configuration: faultflow's namespace (where the run ledgers live, the only
place the janitor and `faults list/recover` look) and the ConfigMap `faultflow-config` in it (the
images and the node toggle directory; written by the kustomize base in deploy/, whose `images:`
rewrites the image values there too).

Nothing here comes from a run: a ledger, a workflow parameter or a CLI flag of a run step never
chooses an image, a host path or the namespace of a pod the steps create. Run parameters that repeat
an image (`steps-image`, `shim-image`) are refused by preflight unless they equal the configured one.

Which namespace is faultflow's: `FAULTFLOW_NAMESPACE` when set; in a pod, the pod's own namespace
(every faultflow ServiceAccount lives in the install namespace, so every step pod runs there); else
`faultflow`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from steps.errors import BadInput
from steps.installation_names import (  # noqa: F401 (re-exported: the steps read them from here)
    CONFIG_NAME,
    DEFAULT_NAMESPACE,
    NAMESPACE_ENV,
    NODE_AGENT_IMAGE,
    SHIM_IMAGE,
    STEPS_IMAGE,
    TOGGLE_DIR,
    config_object,
)
from steps.kube.client import Kube, Ref

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def home_namespace(environ: Mapping[str, str] = os.environ, pod_namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE) -> str:
    """faultflow's install namespace (see the module docstring for the order)."""
    if environ.get(NAMESPACE_ENV):
        return environ[NAMESPACE_ENV]
    if environ.get("KUBERNETES_SERVICE_HOST") and pod_namespace_file.is_file():
        text = pod_namespace_file.read_text().strip()
        if text:
            return text
    return DEFAULT_NAMESPACE


@dataclass(frozen=True)
class InstallConfig:
    namespace: str
    steps_image: str
    shim_image: str
    toggle_dir: str
    # The node pods' image (inject-xid, `shim on`, toggle-off): images/node-agent, no cluster client.
    node_agent_image: str


def config_ref(namespace: str) -> Ref:
    return Ref("v1", "configmaps", namespace, CONFIG_NAME)


def load(kube: Kube, namespace: str | None = None) -> InstallConfig:
    """The installation's configuration; BadInput when faultflow is not installed there."""
    namespace = namespace or home_namespace()
    cm = kube.get_or_none(config_ref(namespace))
    data = (cm or {}).get("data") or {}
    missing = [k for k in (STEPS_IMAGE, SHIM_IMAGE, NODE_AGENT_IMAGE, TOGGLE_DIR) if not data.get(k)]
    if cm is None or missing:
        what = "is missing" if cm is None else f"lacks {', '.join(missing)}"
        raise BadInput(f"faultflow is not installed in namespace {namespace}: ConfigMap {CONFIG_NAME} {what} (kubectl apply -k deploy)")
    toggle_dir = data[TOGGLE_DIR]
    if not toggle_dir.startswith("/") or toggle_dir.rstrip("/") == "":
        raise BadInput(f"ConfigMap {namespace}/{CONFIG_NAME}: {TOGGLE_DIR} {toggle_dir!r} must be an absolute directory below /")
    return InstallConfig(namespace, data[STEPS_IMAGE], data[SHIM_IMAGE], toggle_dir.rstrip("/"), data[NODE_AGENT_IMAGE])


def check_image(option: str, given: str | None, configured: str, namespace: str) -> None:
    """A run parameter repeating an image must be the configured image: images are installation
    configuration (an image of the caller's choice would run in every GPU worker, or on the node)."""
    if given and given != configured:
        raise BadInput(
            f"{option} {given!r} is not the installed image {configured!r} "
            f"(images are set in ConfigMap {namespace}/{CONFIG_NAME}, by deploy/kustomization.yaml `images:`)"
        )
