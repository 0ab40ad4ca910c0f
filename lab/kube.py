"""Kubernetes python clients for a lab cluster: as admin, as an impersonated identity, as a real
ServiceAccount token; and throw-away namespaces.

Every client gets its own `Configuration`; nothing here touches the kubernetes package's global
default configuration, so clients for different clusters and identities coexist in one process.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING

from lab.processes import wait_until
from lab.rest import ApiError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from lab.controlplane import Cluster


def _configuration(cluster: Cluster):
    from kubernetes import client

    config = client.Configuration(host=cluster.server)
    config.ssl_ca_cert = str(cluster.pki.ca_cert)
    return config


def admin_client(cluster: Cluster) -> ApiClient:
    """Authenticated by the admin client certificate (group system:masters)."""
    from kubernetes import client

    config = _configuration(cluster)
    config.cert_file = str(cluster.pki.admin_cert)
    config.key_file = str(cluster.pki.admin_key)
    return client.ApiClient(config)


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def impersonated_client(cluster: Cluster, user: str) -> ApiClient:
    """Admin credentials acting as `user` (`Impersonate-User`), so the real RBAC authorizer decides.

    For a ServiceAccount user (`service_account_user(ns, sa)`) the API server itself adds the groups
    the SA would have (system:serviceaccounts, system:serviceaccounts:<ns>, system:authenticated).
    """
    api = admin_client(cluster)
    api.set_default_header("Impersonate-User", user)
    return api


def service_account_client(cluster: Cluster, namespace: str, name: str, *, expiration_s: int = 3600) -> ApiClient:
    """Authenticated with a real bound token from the TokenRequest API: what a pod's client sends."""
    from kubernetes import client

    token = cluster.rest().post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": expiration_s}},
    )["status"]["token"]
    config = _configuration(cluster)
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(config)


def create_namespace(cluster: Cluster, hint: str) -> str:
    """A new namespace named after `hint`, with its `default` ServiceAccount.

    The lab runs no controller-manager, whose job it normally is to create `default`; the
    ServiceAccount admission plugin refuses pods without it.
    """
    slug = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:40].strip("-") or "t"
    name = f"{slug}-{secrets.token_hex(3)}"
    rest = cluster.rest()
    rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    rest.post(
        f"/api/v1/namespaces/{name}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
    )
    return name


def delete_namespace(cluster: Cluster, name: str, *, timeout_s: float = 30) -> None:
    """Delete the namespace and wait until it is gone.

    Without a controller-manager nobody empties a Terminating namespace, so we finalize it ourselves
    (the `kubernetes` finalizer); its objects stay in etcd under an unlisted namespace.
    """
    rest = cluster.rest()
    try:
        rest.delete(f"/api/v1/namespaces/{name}")
        ns = rest.get(f"/api/v1/namespaces/{name}")
        ns["spec"]["finalizers"] = []
        rest.put(f"/api/v1/namespaces/{name}/finalize", ns)
    except ApiError as err:
        if err.status != 404:
            raise

    def gone() -> bool | None:
        return True if rest.status(f"/api/v1/namespaces/{name}") == 404 else None

    wait_until(gone, what=f"namespace {name} deleted", timeout_s=timeout_s)


def service_account_kubeconfig(cluster: Cluster, namespace: str, name: str, path, *, expiration_s: int = 3600) -> str:
    """A kubeconfig file authenticating with a real bound token of the ServiceAccount (TokenRequest),
    so a step run with `--kubeconfig` (or KUBECONFIG) acts exactly as it would in the SA's pod."""
    import json
    from pathlib import Path

    token = cluster.rest().post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": expiration_s}},
    )["status"]["token"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sa",
        "clusters": [{"name": "lab", "cluster": {"server": cluster.server, "certificate-authority": str(cluster.pki.ca_cert)}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "lab", "user": name, "namespace": namespace}}],
    }
    Path(path).write_text(json.dumps(config, indent=2))
    return str(path)
