"""Issue 15 item 11: preflight checks, before anything is patched, that the target namespace admits
what inject-cuda-shim adds. Against the real kube-apiserver (whose own Pod Security and ResourceQuota
admission would refuse the pods): a namespace enforcing PSA `baseline`/`restricted` (hostPath) and a
ResourceQuota on limits that the init container does not meet are refused with one line naming the
change, exit 2 and no ledger; a LimitRange default, or `--no-shim` (xid-only), lets the run through."""

from __future__ import annotations

from steps.kube.client import Ref
from steps.run import ledger as L
from tests.steps.test_gpu_cluster import make_world
from tests.steps.test_install_config import _preflight
from tests.support.cluster_world import HOME


def _refused(result, *words: str) -> bool:
    line = result.stderr.strip()
    return result.returncode == 2 and len(line.splitlines()) == 1 and all(w in line for w in words)


def _no_ledger(w) -> bool:
    return L.LedgerStore(w.kube, HOME).load(w.ns, w.run) is None


def test_item11_pod_security_that_refuses_hostpath_is_refused_before_anything_changes(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    w = make_world(c, unique, tmp_path)
    ns_ref = Ref("v1", "namespaces", None, w.ns)
    for level in ("baseline", "restricted"):
        w.kube.merge_patch(ns_ref, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}})
        result = _preflight(c, w)
        assert _refused(result, level, "hostPath", "pod-security.kubernetes.io/enforce=privileged"), result.stderr
        assert _no_ledger(w)
    no_shim = _preflight(c, w, "--no-shim")  # xid-only adds nothing to the workload
    assert no_shim.returncode == 0, no_shim.stderr


def test_item11_a_quota_the_init_container_misses_is_refused_and_a_limitrange_default_passes(gpu_cluster, unique, tmp_path):
    c = gpu_cluster
    w = make_world(c, unique, tmp_path)
    # ephemeral-storage: a resource the init container is not expected to set (its cpu/memory may be).
    hard = {"limits.ephemeral-storage": "64Gi"}
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "team"}, "spec": {"hard": hard}}
    w.kube.create(Ref("v1", "resourcequotas", w.ns, ""), quota)
    result = _preflight(c, w)
    assert _refused(result, "ResourceQuota", "team", "limits.ephemeral-storage", "LimitRange"), result.stderr
    assert _no_ledger(w)
    limits = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container", "default": {"ephemeral-storage": "1Gi"}}]},
    }
    w.kube.create(Ref("v1", "limitranges", w.ns, ""), limits)
    passed = _preflight(c, w)
    assert passed.returncode == 0, passed.stderr
