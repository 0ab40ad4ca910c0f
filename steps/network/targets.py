"""The pods a partition selects, and the refusal to partition pods another NetworkPolicy already selects."""

from __future__ import annotations

from steps.errors import CheckFailed
from steps.kube.client import Kube, Ref
from steps.network.selectors import requirements_of, selector_string


def selected_pods(kube: Kube, namespace: str, pod_selector: dict) -> set[str]:
    """Names of the pods a policy's podSelector selects, as the API server evaluates the selector."""
    items = kube.list(Ref("v1", "pods", namespace, ""), label_selector=selector_string(requirements_of(pod_selector)) or None)
    return {p["metadata"]["name"] for p in items.get("items") or []}


def check_no_other_policy(kube: Kube, policies: list[dict]) -> None:
    """CheckFailed when a policy that is not one of these already selects any of their pods for the
    same direction (see the module docstring for why that would not be a partition any more)."""
    ours = {p["metadata"]["name"] for p in policies}
    for policy in policies:
        namespace = policy["metadata"]["namespace"]
        mine = selected_pods(kube, namespace, policy["spec"]["podSelector"])
        for other in kube.list(Ref("networking.k8s.io/v1", "networkpolicies", namespace, "")).get("items") or []:
            if other["metadata"]["name"] in ours:
                continue
            if not set(other["spec"].get("policyTypes") or ["Ingress"]) & set(policy["spec"]["policyTypes"]):
                continue
            shared = mine & selected_pods(kube, namespace, other["spec"].get("podSelector") or {})
            if shared:
                raise CheckFailed(
                    f"networkpolicy {namespace}/{other['metadata']['name']} already selects {len(shared)} of the "
                    f"pods to partition (e.g. {sorted(shared)[0]}); allow-lists add up, so a partition cannot be "
                    "expressed on top of it: heal or remove it first"
                )
