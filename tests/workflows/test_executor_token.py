"""The service-account token Secret Argo mounts for the executor.

With `executor.serviceAccountName` set, Argo's controller mounts the Secret
`<account>.service-account-token` into every pod's init and wait containers. Since Kubernetes 1.24
nothing creates such Secrets unless one asks for it (a Secret of type
`kubernetes.io/service-account-token` annotated with the account's name, which kube-controller-manager's
token controller then fills); without it every faultflow pod stays ContainerCreating.

What is tested here: the committed kustomize base ships that Secret for every account an Argo object
names as its executor, in the account's namespace; the real kube-apiserver accepts it as rendered,
keeps its type and annotation, and really validates that type (the same Secret without the annotation
is refused). The API server alone never fills it: that is kube-controller-manager's token controller,
which the test clusters (etcd + kube-apiserver) do not run, so the last test starts the real
kube-controller-manager (same Kubernetes release, only its `serviceaccount-token` controller) against
the test cluster and checks the token it writes authenticates as the executor account.
"""

from __future__ import annotations

import base64
import dataclasses
import ssl
from pathlib import Path

import pytest
import yaml

from lab import processes, tools
from lab.rest import ApiError, Rest
from tests.workflows.deployed import apply, create
from workflows.deploy import DeployConfig, executor_objects
from workflows.roles import EXECUTOR_SERVICE_ACCOUNT

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
TOKEN_TYPE = "kubernetes.io/service-account-token"
ACCOUNT_ANNOTATION = "kubernetes.io/service-account.name"
# The kube-apiserver's own release, built the same way (branch issue-14 adds this very record as
# lab.tools.KUBE_CONTROLLER_MANAGER; the recipe, and so the cached build, is the same).
KUBE_CONTROLLER_MANAGER = dataclasses.replace(
    tools.KUBE_APISERVER, name="kube-controller-manager", package="k8s.io/kubernetes/cmd/kube-controller-manager"
)


def base_objects() -> list[dict]:
    """Every object the kustomize base lists (its `resources:`, as kustomize reads them)."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return [doc for resource in kustomization["resources"] for doc in yaml.safe_load_all((DEPLOY / resource).read_text()) if doc]


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
        assert any(
            o["kind"] == "ServiceAccount" and o["metadata"]["name"] == account and o["metadata"].get("namespace") == namespace
            for o in objects
        ), account
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


def _token_controller(cluster, folder: Path) -> processes.Process:
    """The real kube-controller-manager running only the controller that fills token Secrets."""
    argv = [
        str(tools.ensure_built(KUBE_CONTROLLER_MANAGER)),
        f"--kubeconfig={cluster.kubeconfig}",
        "--controllers=serviceaccount-token",
        # It signs legacy tokens with the key whose public half the API server checks them with.
        f"--service-account-private-key-file={cluster.pki.sa_private_key}",
        f"--root-ca-file={cluster.pki.ca_cert}",
        "--leader-elect=false",
        "--secure-port=0",  # serve nothing: no port to pick, nothing listening
    ]
    return processes.start("kube-controller-manager", argv, folder / "kube-controller-manager.log")


def test_the_real_token_controller_fills_it_with_the_executors_token(cluster, namespace, tmp_path):
    rest = cluster.rest()
    for obj in executor_objects(DeployConfig(namespace=namespace)):  # what deploy/rbac/executor.yaml holds
        apply(rest, obj)
    path = f"/api/v1/namespaces/{namespace}/secrets/{EXECUTOR_SERVICE_ACCOUNT}.service-account-token"
    assert not rest.get(path).get("data"), "filled before any token controller ran"

    def filled() -> dict | None:
        data = rest.get(path).get("data") or {}
        return data if data.get("token") else None

    controller = _token_controller(cluster, tmp_path)
    try:
        data = processes.wait_until(filled, what="the token controller to fill the Secret", timeout_s=120, process=controller)
    finally:
        controller.stop()
    assert base64.b64decode(data["namespace"]).decode() == namespace
    assert base64.b64decode(data["ca.crt"]) == cluster.pki.ca_cert.read_bytes()

    # The token is the executor's: the real API server authenticates it as that account, and RBAC
    # lets it do what Argo's wait container does (create/patch WorkflowTaskResults) and no more.
    token = base64.b64decode(data["token"]).decode()
    as_executor = Rest(cluster.server, ssl.create_default_context(cafile=str(cluster.pki.ca_cert)), token)
    review = as_executor.post(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews", {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:{EXECUTOR_SERVICE_ACCOUNT}"

    def allowed(verb: str, resource: str, group: str) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group, "namespace": namespace}},
        }
        return as_executor.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body)["status"].get("allowed", False)

    assert allowed("create", "workflowtaskresults", "argoproj.io") and allowed("patch", "workflowtaskresults", "argoproj.io")
    assert not allowed("get", "secrets", "")
