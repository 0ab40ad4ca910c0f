"""Shared fixtures: a real control plane (etcd + kube-apiserver per cluster) for the whole session.

Clusters start on first use, so test modules that never ask for one pay nothing.

- `control_plane`      session: `lab.controlplane.ControlPlane`; `.cluster(ClusterSpec(...))` starts
                       (once) a cluster of any kind, e.g. ClusterSpec(argo="v3.7")
- `cluster`            session: the default cluster (DGD v1beta1, Argo v4.0 CRDs), all CRDs Established
- `cluster_v1alpha1`   session: the same with the DGD served at v1alpha1
- `dgd_cluster`        session, parametrised over both DGD versions: (version, Cluster)
- `kube`               an admin `kubernetes.client.ApiClient` for `cluster`
- `new_namespace`      factory: `new_namespace(cluster) -> str`, each deleted after the test
- `namespace`          a fresh namespace in `cluster`
- `as_service_account` factory: `as_service_account(namespace, name, cluster=...) -> ApiClient`
                       impersonating system:serviceaccount:<namespace>:<name> (admin creds)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lab import crds
from lab import kube as lab_kube
from lab.cluster_pool import ControlPlane
from lab.controlplane import Cluster, ClusterSpec


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane.start() as plane:
        yield plane


@pytest.fixture(scope="session")
def cluster(control_plane: ControlPlane) -> Cluster:
    return control_plane.cluster(ClusterSpec())


@pytest.fixture(scope="session")
def cluster_v1alpha1(control_plane: ControlPlane) -> Cluster:
    return control_plane.cluster(ClusterSpec(dgd_version="v1alpha1"))


@pytest.fixture(scope="session", params=crds.DGD_VERSIONS)
def dgd_cluster(request: pytest.FixtureRequest, control_plane: ControlPlane) -> tuple[str, Cluster]:
    return request.param, control_plane.cluster(ClusterSpec(dgd_version=request.param))


@pytest.fixture
def kube(cluster: Cluster) -> Iterator:
    api = lab_kube.admin_client(cluster)
    yield api
    api.close()


@pytest.fixture
def new_namespace(request: pytest.FixtureRequest) -> Iterator[Callable[[Cluster], str]]:
    created: list[tuple[Cluster, str]] = []

    def make(target: Cluster) -> str:
        name = lab_kube.create_namespace(target, request.node.name)
        created.append((target, name))
        return name

    yield make
    for target, name in created:
        lab_kube.delete_namespace(target, name)


@pytest.fixture
def namespace(cluster: Cluster, new_namespace: Callable[[Cluster], str]) -> str:
    return new_namespace(cluster)


@pytest.fixture
def as_service_account(cluster: Cluster) -> Iterator[Callable[..., object]]:
    clients = []

    def make(namespace: str, name: str, target: Cluster | None = None):
        api = lab_kube.impersonated_client(target or cluster, lab_kube.service_account_user(namespace, name))
        clients.append(api)
        return api

    yield make
    for api in clients:
        api.close()
