"""The DGD operator SIMULATOR installed as Dynamo's operator is: a Deployment in its own namespace,
with a ServiceAccount whose ClusterRole grants what the operator does (DGDs and their status,
Deployments, Services), running the faultflow-lab-operator image (`lab.images.worker`).

It prefers nodes without GPUs (as a platform keeps controllers off GPU nodes); should a drain evict
it anyway, its Deployment starts it elsewhere and it resumes from the API (it keeps no state).
"""

from __future__ import annotations

from lab.gpu_nodes import GPU_PRESENT_LABEL
from steps.kube.client import Conflict, Kube, Ref
from steps.workload.dynamo import DGD_GROUP, DGD_PLURAL

NAMESPACE = "dynamo-system"
NAME = "dynamo-operator"
LABELS = {"app.kubernetes.io/name": NAME}


def cluster_role() -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": NAME},
        "rules": [
            {"apiGroups": [DGD_GROUP], "resources": [DGD_PLURAL], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [DGD_GROUP], "resources": [f"{DGD_PLURAL}/status"], "verbs": ["get", "patch", "update"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "update", "delete"]},
            {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create"]},
        ],
    }


def objects(image: str, dgd_version: str) -> list[tuple[Ref, dict]]:
    away_from_gpus = {"matchExpressions": [{"key": GPU_PRESENT_LABEL, "operator": "DoesNotExist"}]}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": NAME},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
        "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "serviceAccountName": NAME,
                    "terminationGracePeriodSeconds": 2,
                    "affinity": {
                        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": away_from_gpus}]}
                    },
                    "containers": [
                        {
                            "name": "operator",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "args": ["--dgd-version", dgd_version],
                            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True},
                            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                        }
                    ],
                },
            },
        },
    }
    return [
        (Ref("v1", "serviceaccounts", NAMESPACE, ""), {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME}}),
        (Ref("rbac.authorization.k8s.io/v1", "clusterroles", None, ""), cluster_role()),
        (Ref("rbac.authorization.k8s.io/v1", "clusterrolebindings", None, ""), binding),
        (Ref("apps/v1", "deployments", NAMESPACE, ""), deployment),
    ]


def install(kube: Kube, image: str, dgd_version: str) -> None:
    """Create its objects (its namespace exists); ones already there are left as they are. Does not wait."""
    for ref, body in objects(image, dgd_version):
        try:
            kube.create(ref, body)
        except Conflict:
            pass
