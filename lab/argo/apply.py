"""Create-or-replace of plain objects through the REST client: what `kubectl apply` ends with for a
fresh object, for the handful of kinds Argo's install and the lab's configuration use."""

from __future__ import annotations

from lab.rest import ApiError, Rest

# kind -> (plural, namespaced): the kinds Argo's install and the lab's configuration are made of.
_KINDS = {
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "Namespace": ("namespaces", False),
    "PriorityClass": ("priorityclasses", False),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "ConfigMap": ("configmaps", True),
    "Secret": ("secrets", True),
    "ServiceAccount": ("serviceaccounts", True),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "Deployment": ("deployments", True),
    "Service": ("services", True),
}


def collection_path(obj: dict) -> str:
    """The REST collection an object is created in."""
    kind = obj["kind"]
    if kind not in _KINDS:
        raise ValueError(f"lab.argo.install does not know where {kind} objects go")
    plural, namespaced = _KINDS[kind]
    api = obj["apiVersion"]
    base = "/api/v1" if api == "v1" else f"/apis/{api}"
    if namespaced:
        return f"{base}/namespaces/{obj['metadata']['namespace']}/{plural}"
    return f"{base}/{plural}"


def apply(rest: Rest, obj: dict) -> None:
    """Create the object, or replace the one already there (what `kubectl apply` ends with)."""
    path = collection_path(obj)
    try:
        rest.post(path, obj)
    except ApiError as err:
        if err.status != 409:
            raise
        item = f"{path}/{obj['metadata']['name']}"
        current = rest.get(item)
        body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
        rest.put(item, body)
