"""RBAC of deploy/: each role's ServiceAccount runs its real steps against the real API server with
a real bound token (the RBAC authorizer decides), and is refused what it must not do.

The GPU sequence runs as the scenario runs it — preflight, inject-cuda-shim, wait-for-cordon,
cleanup-dgd — each as its own account; then a second run is left behind, its workflow marked
finished, and the janitor reverts it as the janitor account. Kubelet, NVSentinel and the Dynamo
operator are the simulators of tests/support/cluster_world.py.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from pathlib import Path

import pytest

from lab import kube as lab_kube
from lab.rest import Rest
from steps.gpu import nvsentinel as nv
from steps.kube.client import Ref, connect
from steps.run import install
from tests.dgd_samples import dgd_v1beta1
from tests.support.cluster_world import (
    FAULTFLOW,
    KubeletSimulator,
    dgd_ref,
    install_faultflow,
    make_gpu_node,
    simulate_nvsentinel_quarantine,
    simulate_nvsentinel_uncordon,
)
from tests.workflows.deployed import apply, delete
from workflows.deploy import DeployConfig, executor_objects, role_objects
from workflows.roles import (
    ABORT_WATCHER,
    CLEANUP,
    CORDON_WATCHER,
    JANITOR,
    NETWORK_INJECTOR,
    NODE_AGENT,
    OBSERVER,
    PREFLIGHT,
    ROLES,
    SHIM_INJECTOR,
    SUITE,
)


class Accounts:
    """deploy/'s RBAC for one test's namespaces, and a kubeconfig per role's ServiceAccount."""

    def __init__(self, cluster, config: DeployConfig, folder: Path):
        self.cluster, self.config, self.folder = cluster, config, folder
        self.objects = executor_objects(config) + [o for role in ROLES for o in role_objects(role, config)]

    def __enter__(self):
        rest = self.cluster.rest()
        for obj in self.objects:
            apply(rest, obj)
        return self

    def __exit__(self, *exc):
        rest = self.cluster.rest()
        for obj in self.objects:
            if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                delete(rest, obj)

    def kubeconfig(self, role) -> str:
        path = self.folder / f"{role.name}.kubeconfig"
        if not path.exists():
            lab_kube.service_account_kubeconfig(self.cluster, self.config.namespace, role.service_account, path)
        return str(path)

    def run(self, role, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig(role),
            "PYTHONPATH": str(Path.cwd()),
            install.NAMESPACE_ENV: self.config.namespace,
        }
        return subprocess.run(FAULTFLOW + list(args), capture_output=True, text=True, env=env, timeout=timeout)

    def popen(self, role, *args: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig(role),
            "PYTHONPATH": str(Path.cwd()),
            install.NAMESPACE_ENV: self.config.namespace,
        }
        return subprocess.Popen(FAULTFLOW + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def allowed(self, role, verb: str, resource: str, namespace: str | None = None, group: str = "", subresource: str = "") -> bool:
        """A SelfSubjectAccessReview sent with the role's own token."""
        token = json.loads(Path(self.kubeconfig(role)).read_text())["users"][0]["user"]["token"]
        rest = Rest(self.cluster.server, ssl.create_default_context(cafile=str(self.cluster.pki.ca_cert)), token)
        attributes = {"verb": verb, "resource": resource, "group": group, "subresource": subresource}
        if namespace:
            attributes["namespace"] = namespace
        review = rest.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {"resourceAttributes": attributes}},
        )
        return review["status"].get("allowed", False)


@pytest.fixture
def world(cluster, new_namespace, tmp_path):
    """Namespaces (faultflow's, an opted-in target, NVSentinel's, an unrelated one), a GPU node, a
    v1beta1 DGD with a Ready worker pod on the node, NVSentinel's monitor Running there."""
    admin = connect(str(cluster.kubeconfig))
    home, nvs, other = (new_namespace(cluster) for _ in range(3))
    target = new_namespace(cluster)
    admin.merge_patch(Ref("v1", "namespaces", None, target), {"metadata": {"labels": {"faultflow.dev/allow-faults": "true"}}})
    node = f"gpu-{target}"
    make_gpu_node(admin, node)
    sample = dgd_v1beta1(name="llm", namespace=target)
    admin.create(dgd_ref(sample), sample)
    other_dgd = dgd_v1beta1(name="llm", namespace=other)
    admin.create(dgd_ref(other_dgd), other_dgd)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "llm-worker-0",
            "namespace": target,
            "labels": {"nvidia.com/dynamo-graph-deployment-name": "llm", "nvidia.com/dynamo-component-type": "worker"},
        },
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "runtime:1"}]},
    }
    monitor = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "shm", "namespace": nvs, "labels": {"app.kubernetes.io/name": "syslog-health-monitor"}},
        "spec": {"nodeName": node, "containers": [{"name": "m", "image": "m:1"}]},
    }
    for body, status in ((pod, {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}), (monitor, {"phase": "Running"})):
        ref = Ref("v1", "pods", body["metadata"]["namespace"], body["metadata"]["name"])
        admin.create(ref, body)
        admin.request("PATCH", ref.path() + "/status", body={"status": status}, content_type="application/merge-patch+json")
    # NVSentinel's fault-quarantine configuration, breaker off: this world has one GPU node, and with the
    # breaker on any cordon of it would trip it (preflight refuses that run; tested in test_nvsentinel_steps).
    admin.create(
        Ref("v1", "configmaps", nvs, ""),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": nv.FAULT_QUARANTINE_CONFIGMAP},
            "data": {"config.toml": "[circuitBreaker]\nenabled = false\n"},
        },
    )
    config = DeployConfig(namespace=home, target_namespaces=(target,), nvsentinel_namespace=nvs)
    install_faultflow(admin, home)  # ConfigMap faultflow-config, as deploy/config.yaml installs it
    with Accounts(cluster, config, tmp_path) as accounts:
        yield {
            "admin": admin,
            "accounts": accounts,
            "target": target,
            "other": other,
            "node": node,
            "nvs": nvs,
            "home": home,
            "dgd": dgd_ref(sample),
            "toggle": tmp_path / "toggle",
            "cluster": cluster,
        }


def _workflow(admin, namespace: str, name: str, phase: str) -> dict:
    body = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"workflowTemplateRef": {"name": "gpu-fault"}},
        "status": {"phase": phase},
    }
    return admin.create(Ref("argoproj.io/v1alpha1", "workflows", namespace, ""), body)


def _spec(admin, ref: Ref) -> str:
    return json.dumps(admin.get(ref)["spec"], sort_keys=True)


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


def test_each_role_runs_its_steps_as_its_own_account(world):
    w, a = world, world["accounts"]
    admin, ns, toggle_dir = w["admin"], w["target"], w["toggle"]
    toggle_dir.mkdir()
    before = _spec(admin, w["dgd"])

    def preflight(run: str, workflow: dict, *extra: str):
        return a.run(
            PREFLIGHT,
            "step",
            "preflight",
            "--run-id",
            run,
            "--namespace",
            ns,
            "--target",
            "dgd/llm",
            "--xid",
            "79",
            "--nvsentinel-namespace",
            w["nvs"],
            "--toggle-dir",
            str(toggle_dir),
            "--steps-image",
            "steps:1",
            "--workflow-name",
            workflow["metadata"]["name"],
            "--workflow-namespace",
            w["home"],
            "--workflow-uid",
            workflow["metadata"]["uid"],
            *extra,
        )

    def inject(run: str):
        return a.run(
            SHIM_INJECTOR,
            "step",
            "inject-cuda-shim",
            "--run-id",
            run,
            "--namespace",
            ns,
            "--target",
            "dgd/llm",
            "--shim-image",
            "shim:1",
            "--xid",
            "79",
            "--toggle-dir",
            str(toggle_dir),
            "--no-wait",
        )

    live = _workflow(admin, w["home"], "gpu-fault-live", "Running")
    assert json.loads(_ok(preflight("run-a", live)).stdout.splitlines()[-1])["node"] == w["node"]
    _ok(inject("run-a"))
    assert _spec(admin, w["dgd"]) != before
    watcher = a.popen(
        CORDON_WATCHER,
        "step",
        "wait-for-cordon",
        "--node",
        w["node"],
        "--xid",
        "79",
        "--timeout",
        "30s",
        "--namespace",
        ns,
        "--target",
        "dgd/llm",
        "--wait-evicted",
        "--eviction-timeout",
        "30s",
    )
    for line in watcher.stdout:  # watching (and the worker counted on the node) before NVSentinel acts
        if '"event":"watch_started"' in line:
            break
    simulate_nvsentinel_quarantine(admin, w["node"], 79)
    # The drain (no kubelet here to finish a graceful deletion, so it is immediate).
    admin.request("DELETE", Ref("v1", "pods", ns, "llm-worker-0").path(), query={"gracePeriodSeconds": "0"})
    out, err = watcher.communicate(timeout=90)
    assert watcher.returncode == 0, err
    assert "node_cordoned" in out and "pods_evicted" in out
    with KubeletSimulator(admin, w["home"], roots={w["node"]: toggle_dir}) as kubelet:
        _ok(a.run(CLEANUP, "step", "cleanup-dgd", "--run-id", "run-a", "--namespace", ns, "--timeout", "60s"))
        assert kubelet.ran, "the toggle-off pod never ran"
    assert _spec(admin, w["dgd"]) == before

    # NVSentinel lets the node go again (preflight refuses a cordoned node: issue 15 item 13).
    simulate_nvsentinel_uncordon(admin, w["node"])
    admin.merge_patch(Ref("v1", "nodes", None, w["node"]), {"spec": {"unschedulable": False}})
    # A second run is left behind; its workflow finished: the janitor (its own account) reverts it.
    done = _workflow(admin, w["home"], "gpu-fault-done", "Running")
    # Its worker pod has left the node; the same XID on the same GPU moments later is inside NVSentinel's
    # dedup window (refused; tested in test_nvsentinel_steps), so this run says NVSentinel runs without one.
    _ok(preflight("run-b", done, "--node", w["node"], "--dedup-window", "0"))
    _ok(inject("run-b"))
    assert _spec(admin, w["dgd"]) != before
    admin.merge_patch(Ref("argoproj.io/v1alpha1", "workflows", w["home"], "gpu-fault-done"), {"status": {"phase": "Failed"}})
    with KubeletSimulator(admin, w["home"], roots={w["node"]: toggle_dir}):
        swept = _ok(a.run(JANITOR, "step", "janitor", "--timeout", "60s"))
    assert '"reason":"workflow-finished"' in swept.stdout
    assert _spec(admin, w["dgd"]) == before


def test_network_steps_run_as_their_own_accounts(world):
    """preflight (preflight), partition/verify/degrade (network-injector), heal (cleanup): each with its
    real token, so the RBAC authorizer decides every call the network steps make."""
    w, a = world, world["accounts"]
    admin, ns = w["admin"], w["target"]
    # A node with a pod CIDR (partition-network's ipBlocks come from them) for this test only: the
    # cluster is shared, and other tests expect nodes without one.
    cidr_node = f"pod-cidr-{ns}"[:63]
    admin.create(
        Ref("v1", "nodes", None, ""),
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": cidr_node},
            "spec": {"podCIDR": "10.244.7.0/24", "podCIDRs": ["10.244.7.0/24"]},
        },
    )
    try:
        network_steps_as_their_accounts(a, admin, ns)
    finally:
        admin.delete(Ref("v1", "nodes", None, cidr_node))


def network_steps_as_their_accounts(a, admin, ns) -> None:
    nats = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nats-0", "namespace": ns, "labels": {"app.kubernetes.io/name": "nats"}},
        "spec": {"containers": [{"name": "nats", "image": "nats:1"}]},
    }
    admin.create(Ref("v1", "pods", ns, ""), nats)
    common = ("--run-id", "net-a", "--namespace", ns)
    _ok(a.run(PREFLIGHT, "step", "preflight", "--fault", "network", *common, "--target", "dgd/llm"))
    _ok(a.run(NETWORK_INJECTOR, "step", "partition-network", *common, "--target", "dgd/llm", "--partition", "worker-nats"))
    _ok(a.run(NETWORK_INJECTOR, "step", "verify-partition", *common))
    _ok(a.run(NETWORK_INJECTOR, "step", "degrade-network", *common, "--target", "dgd/llm", "--peer", "nats", "--loss", "10"))
    healed = _ok(a.run(CLEANUP, "step", "heal-network", *common))
    assert '"event":"fault_cleared"' in healed.stdout
    for plural, group in (("networkpolicies", "networking.k8s.io/v1"), ("networkchaos", "chaos-mesh.org/v1alpha1")):
        assert admin.list(Ref(group, plural, ns, ""), label_selector="faultflow.dev/run=net-a")["items"] == []


def test_token_less_roles_get_no_token_and_no_permissions(world):
    a = world["accounts"]
    for role in (NODE_AGENT, OBSERVER):
        sa = world["admin"].get(Ref("v1", "serviceaccounts", world["home"], role.service_account))
        assert sa["automountServiceAccountToken"] is False
        for verb, resource in (("get", "pods"), ("list", "configmaps"), ("get", "nodes")):
            assert not a.allowed(role, verb, resource, world["target"]), (role.name, verb, resource)


# What no role may do: delete nodes, read secrets, touch a namespace nobody bound it in.
FORBIDDEN = [
    ("delete", "nodes", None, ""),
    ("get", "secrets", "target", ""),
    ("list", "secrets", "home", ""),
    ("patch", "dynamographdeployments", "other", "nvidia.com"),
    ("create", "configmaps", "other", ""),
    ("create", "pods", "other", ""),
    ("escalate", "clusterroles", None, "rbac.authorization.k8s.io"),
]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_roles_are_refused_what_they_must_not_do(world, role):
    a = world["accounts"]
    for verb, resource, where, group in FORBIDDEN:
        namespace = world[where] if where else None
        assert not a.allowed(role, verb, resource, namespace, group), (role.name, verb, resource, where)


def test_janitor_cannot_delete_nodes_or_read_secrets(world):
    a = world["accounts"]
    for verb, resource, where, group in FORBIDDEN[:3]:
        assert not a.allowed(JANITOR, verb, resource, world[where] if where else None, group)


def test_item1_janitor_rights_shrunk_to_its_trust_boundary(world):
    """Ledgers only in faultflow's namespace, reverts only in the target namespaces, pods only in
    faultflow's namespace (toggle-off), and no node patch (it never uncordons)."""
    a, home, target, other = world["accounts"], world["home"], world["target"], world["other"]
    assert a.allowed(JANITOR, "list", "configmaps", home) and a.allowed(JANITOR, "update", "configmaps", home)
    assert a.allowed(JANITOR, "patch", "dynamographdeployments", target, "nvidia.com")
    assert a.allowed(JANITOR, "create", "pods", home)
    for verb, resource, where, group in (
        ("list", "configmaps", other, ""),
        ("list", "configmaps", target, ""),
        ("update", "configmaps", target, ""),
        ("patch", "dynamographdeployments", other, "nvidia.com"),
        ("patch", "deployments", other, "apps"),
        ("create", "pods", target, ""),
        ("create", "pods", other, ""),
        ("patch", "nodes", None, ""),
        ("get", "workflows", other, "argoproj.io"),
    ):
        assert not a.allowed(JANITOR, verb, resource, where, group), (verb, resource, where)
    for role in (PREFLIGHT, SHIM_INJECTOR, CLEANUP, NETWORK_INJECTOR):  # ledgers are written in faultflow's namespace only
        assert not a.allowed(role, "update", "configmaps", target), role.name
        assert a.allowed(role, "get", "configmaps", home), role.name


def test_a_real_patch_of_another_namespaces_dgd_is_forbidden(world):
    """Not only the review: the API server refuses the injector's actual patch outside its namespaces."""
    kube = connect(world["accounts"].kubeconfig(SHIM_INJECTOR))
    ref = Ref("nvidia.com/v1beta1", "dynamographdeployments", world["other"], "llm")
    with pytest.raises(Exception) as error:
        kube.merge_patch(ref, {"metadata": {"labels": {"x": "y"}}})
    assert "403" in str(error.value)
    assert world["accounts"].allowed(SHIM_INJECTOR, "patch", "dynamographdeployments", world["target"], "nvidia.com")


def test_network_and_suite_roles_have_exactly_their_grants(world):
    a, target, home = world["accounts"], world["target"], world["home"]
    assert a.allowed(NETWORK_INJECTOR, "create", "networkpolicies", target, "networking.k8s.io")
    assert a.allowed(NETWORK_INJECTOR, "create", "networkchaos", target, "chaos-mesh.org")
    assert not a.allowed(NETWORK_INJECTOR, "patch", "dynamographdeployments", target, "nvidia.com")
    assert a.allowed(CLEANUP, "delete", "networkpolicies", target, "networking.k8s.io")
    assert not a.allowed(CLEANUP, "create", "networkpolicies", target, "networking.k8s.io")
    assert a.allowed(SUITE, "create", "workflows", home, "argoproj.io")
    assert not a.allowed(SUITE, "create", "workflows", target, "argoproj.io")


def test_executor_account_only_reports_task_results(world):
    cluster, home = world["cluster"], world["home"]
    config = lab_kube.impersonated_client(cluster, lab_kube.service_account_user(home, "faultflow-executor"))
    try:
        from kubernetes import client

        api = client.AuthorizationV1Api(config)

        def can(verb, resource, group):
            review = client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(verb=verb, resource=resource, group=group, namespace=home)
                )
            )
            return api.create_self_subject_access_review(review).status.allowed

        assert can("create", "workflowtaskresults", "argoproj.io") and can("patch", "workflowtaskresults", "argoproj.io")
        assert not can("get", "pods", "") and not can("create", "workflows", "argoproj.io")
    finally:
        config.close()


def test_abort_watcher_stops_its_run_as_its_own_account_and_nothing_else(world, tmp_path):
    """Issue 18: the watcher lists nodes and stops a Workflow in faultflow's namespace, with its own
    token; it may not touch Workflows elsewhere, and no faultflow account may lift a halt (delete
    ConfigMap faultflow-halt)."""
    a, home, target, other = world["accounts"], world["home"], world["target"], world["other"]
    admin = connect(str(world["cluster"].kubeconfig))
    body = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "run-1", "labels": {"app.kubernetes.io/part-of": "faultflow", "faultflow.dev/scenario": "gpu-fault"}},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "suspend": {}}]},
    }
    admin.create(Ref("argoproj.io/v1alpha1", "workflows", home, ""), body)
    nodes = admin.list(Ref("v1", "nodes", None, ""))["items"]
    already = sum(1 for n in nodes if (n.get("spec") or {}).get("unschedulable"))
    admin.merge_patch(Ref("v1", "nodes", None, world["node"]), {"spec": {"unschedulable": True}})
    try:
        result = a.run(
            ABORT_WATCHER,
            "step",
            "watch-abort",
            "--abort-if",
            f"cordoned>{already}",
            "--interval",
            "0.2",
            "--run-id",
            "run-1",
            "--workflow-name",
            "run-1",
            "--outputs-dir",
            str(tmp_path / "o"),
        )
    finally:
        admin.merge_patch(Ref("v1", "nodes", None, world["node"]), {"spec": {"unschedulable": False}})
    assert result.returncode == 4, result.stderr
    assert admin.get(Ref("argoproj.io/v1alpha1", "workflows", home, "run-1"))["spec"]["shutdown"] == "Stop"
    for verb, resource, where, group in (
        ("patch", "workflows", target, "argoproj.io"),
        ("patch", "workflows", other, "argoproj.io"),
        ("create", "workflows", home, "argoproj.io"),
        ("delete", "workflows", home, "argoproj.io"),
        ("get", "configmaps", home, ""),
        ("patch", "nodes", None, ""),
    ):
        assert not a.allowed(ABORT_WATCHER, verb, resource, where, group), (verb, resource, where)
    for role in ROLES:
        assert not a.allowed(role, "delete", "configmaps", home), role.name
