"""The local runner's scenario mutexes as Leases in the real API server."""

from __future__ import annotations

import pytest

from lab.run_lock import LEASE_DURATION_S, RunLocks, lease_ref
from steps.errors import CheckFailed
from steps.kube.client import connect


@pytest.fixture
def kube(cluster):
    return connect(str(cluster.kubeconfig))


def holders(kube, namespace: str) -> dict[str, str]:
    listing = kube.list(lease_ref(namespace, ""))
    return {item["metadata"]["name"]: item["spec"]["holderIdentity"] for item in listing["items"]}


def test_a_second_run_on_the_same_lock_is_refused_until_the_first_ends(kube, namespace: str) -> None:
    with RunLocks(kube, namespace, ["faultflow-gpu", f"faultflow-{namespace}"], "run-a"):
        assert holders(kube, namespace) == {"faultflow-gpu": "run-a", f"faultflow-{namespace}": "run-a"}
        with pytest.raises(CheckFailed, match="held by run run-a"):
            with RunLocks(kube, namespace, [f"faultflow-{namespace}", "faultflow-other"], "run-b"):
                pass
        # The refused run took nothing (all or none).
        assert "faultflow-other" not in holders(kube, namespace)
    assert holders(kube, namespace) == {}
    with RunLocks(kube, namespace, [f"faultflow-{namespace}"], "run-b"):
        assert holders(kube, namespace) == {f"faultflow-{namespace}": "run-b"}


def test_a_stale_lease_of_a_dead_runner_is_taken_over(kube, namespace: str) -> None:
    kube.create(
        lease_ref(namespace, ""),
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "faultflow-gpu"},
            "spec": {"holderIdentity": "run-dead", "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": "2020-01-01T00:00:00.000000Z"},
        },
    )
    with RunLocks(kube, namespace, ["faultflow-gpu"], "run-new"):
        assert holders(kube, namespace) == {"faultflow-gpu": "run-new"}


def test_release_leaves_a_lease_another_run_took_over(kube, namespace: str) -> None:
    locks = RunLocks(kube, namespace, ["faultflow-gpu"], "run-a").__enter__()
    kube.merge_patch(lease_ref(namespace, "faultflow-gpu"), {"spec": {"holderIdentity": "run-b"}})
    locks.release()
    assert holders(kube, namespace) == {"faultflow-gpu": "run-b"}
