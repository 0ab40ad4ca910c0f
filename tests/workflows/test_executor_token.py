"""The service-account token Secret Argo mounts for the executor.

With `executor.serviceAccountName` set, Argo's controller mounts the Secret
`<account>.service-account-token` into every pod's init and wait containers. Since Kubernetes 1.24
nothing creates such Secrets unless one asks for it (a Secret of type
`kubernetes.io/service-account-token` annotated with the account's name, which kube-controller-manager's
token controller then fills); without it every faultflow pod stays ContainerCreating.

What is tested here: the committed kustomize base ships that Secret for every account an Argo object
names as its executor, in the account's namespace; the real kube-apiserver accepts it as rendered,
keeps its type and annotation, and really validates that type (the same Secret without the annotation
is refused). What is not: that the token gets filled — that is kube-controller-manager's token
controller, which the test clusters (etcd + kube-apiserver) do not run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lab.rest import ApiError
from tests.workflows.deployed import create

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TOKEN_TYPE = "kubernetes.io/service-account-token"
ACCOUNT_ANNOTATION = "kubernetes.io/service-account.name"


def base_objects() -> list[dict]:
    """Every object the kustomize base lists (its `resources:`, as kustomize reads them)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return [doc for resource in kustomization["resources"]
            for doc in yaml.safe_load_all((DEPLOY / resource).read_text()) if doc]


def executor_accounts(objects: list[dict]) -> set[tuple[str, str]]:
    """(namespace, account) for every executor account an Argo object names (workflow or template level)."""
    found = set()
    for obj in objects:
        if obj["kind"] not in ("WorkflowTemplate", "CronWorkflow", "ClusterWorkflowTemplate"):
            continue
        spec = obj["spec"]["workflowSpec"] if obj["kind"] == "CronWorkflow" else obj["spec"]
        for holder in (spec, *spec.get("templates", [])):
            account = holder.get("executor", {}).get("serviceAccountName")
            if account:
                found.add((obj["metadata"]["namespace"], account))
    return found


def token_secret(objects: list[dict], namespace: str, account: str) -> dict | None:
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Secret" and meta["name"] == f"{account}.service-account-token" and meta.get("namespace") == namespace:
            return obj
    return None


def test_the_base_ships_a_token_secret_for_every_executor_account():
    objects = base_objects()
    accounts = executor_accounts(objects)
    assert accounts, "no Argo object names an executor account: the check would pass vacuously"
    for namespace, account in sorted(accounts):
        assert any(o["kind"] == "ServiceAccount" and o["metadata"]["name"] == account
                   and o["metadata"].get("namespace") == namespace for o in objects), account
        secret = token_secret(objects, namespace, account)
        assert secret is not None, f"deploy/ has no Secret {account}.service-account-token in {namespace}"
        assert secret["type"] == TOKEN_TYPE
        assert secret["metadata"]["annotations"][ACCOUNT_ANNOTATION] == account
        assert not secret.get("data") and not secret.get("stringData"), "the token controller fills it, not the base"


def _in(namespace: str, obj: dict) -> dict:
    return {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}


def test_the_real_api_server_accepts_the_token_secret_as_rendered(cluster, namespace):
    objects = base_objects()
    accounts = sorted(executor_accounts(objects))
    rest = cluster.rest()
    for home, account in accounts:
        service_account = next(o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == account)
        secret = token_secret(objects, home, account)
        assert secret is not None, f"deploy/ has no Secret {account}.service-account-token"
        create(rest, _in(namespace, service_account))
        created = create(rest, _in(namespace, secret))  # strict field validation: nothing misspelt
        stored = rest.get(f"/api/v1/namespaces/{namespace}/secrets/{created['metadata']['name']}")
        assert stored["type"] == TOKEN_TYPE
        assert stored["metadata"]["annotations"][ACCOUNT_ANNOTATION] == account

        # The type is really validated: without the annotation naming the account, the API server refuses it.
        bare = _in(namespace, secret)
        bare["metadata"] = {**bare["metadata"], "name": f"{account}.unannotated", "annotations": {}}
        with pytest.raises(ApiError) as refused:
            create(rest, bare)
        assert refused.value.status == 422 and ACCOUNT_ANNOTATION in str(refused.value)
