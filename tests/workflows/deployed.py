"""Putting the rendered deploy/ objects into a real API server (tests only)."""

from __future__ import annotations

from lab.rest import ApiError, Rest

PLURALS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "WorkflowTemplate": "workflowtemplates",
    "CronWorkflow": "cronworkflows",
    "Workflow": "workflows",
    "Secret": "secrets",
    "ConfigMap": "configmaps",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}


def collection(obj: dict, namespace: str | None = None) -> str:
    group_version = obj["apiVersion"]
    base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    ns = namespace or obj["metadata"].get("namespace")
    scope = f"/namespaces/{ns}" if ns and obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding") else ""
    return f"{base}{scope}/{PLURALS[obj['kind']]}"


def create(rest: Rest, obj: dict, *, dry_run: bool = False, namespace: str | None = None) -> dict:
    """Server-side create with strict field validation: an unknown or misspelt field is an error, not
    silently pruned by the CRD's structural schema."""
    query = "?fieldValidation=Strict" + ("&dryRun=All" if dry_run else "")
    if namespace:
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    return rest.post(collection(obj, namespace) + query, obj)


def apply(rest: Rest, obj: dict) -> dict:
    """Create, or replace a same-named object left by an earlier test (cluster-scoped RBAC names are fixed)."""
    try:
        return create(rest, obj)
    except ApiError as error:
        if error.status != 409:
            raise
    path = f"{collection(obj)}/{obj['metadata']['name']}"
    current = rest.get(path)
    return rest.put(path, {**obj, "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}})


def delete(rest: Rest, obj: dict) -> None:
    try:
        rest.delete(f"{collection(obj)}/{obj['metadata']['name']}")
    except ApiError as error:
        if error.status != 404:
            raise
