"""The lab's DGD on real nodes: `lab.dgd_examples`' shape (a frontend and GPU workers, in either API
version) with the images built here (`lab.images.worker`) and what a user writes for them.

* the frontend runs the routing frontend SIMULATOR (`python -m lab.frontend`) and prefers nodes
  without GPUs, as a user keeps CPU work off GPU nodes;
* each GPU worker runs `lab/worker_process.py` over the DRIVER SIMULATOR, serving on its pod address
  (`--host 0.0.0.0`) at Dynamo's system port, asks for one `nvidia.com/gpu` (the node's device plugin
  allocates it) and is spread evenly over the schedulable GPU nodes (a drained node's workers go to
  the others).

Images are the node's own (imagePullPolicy Never): the lab has no registry.
"""

from __future__ import annotations

from lab.gpu_nodes import GPU_PRESENT_LABEL
from lab.images import worker
from lab.simulators.dgd_operator import FRONTEND_PORT, SYSTEM_PORT
from steps.workload.dynamo import COMPONENT_LABEL, DGD_GROUP, DGD_NAME_LABEL

FRONTEND = "Frontend"
WORKER = "VllmWorker"
GRACE_S = 2  # a lab process exits at once on SIGTERM; a short grace keeps drains and rollouts quick


def frontend_container() -> dict:
    return {
        "name": "main",
        "image": worker.frontend_image().ref,
        "imagePullPolicy": "Never",
        "command": ["python3", "-m", "lab.frontend"],
        "args": ["--host", "0.0.0.0", "--port", str(FRONTEND_PORT)],
    }


def worker_container() -> dict:
    return {
        "name": "main",
        "image": worker.LAB_WORKER.ref,
        "imagePullPolicy": "Never",
        "args": ["--host", "0.0.0.0", "--port", str(SYSTEM_PORT), "--name", "$(POD_NAME)"],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            # The node's driver tree is bound over every container's /proc/driver (lab.nodes.driver_proc,
            # as NVIDIA's container toolkit does): the DRIVER SIMULATOR presents the node's GPUs with
            # their bus ids, so a fault the toggle aims at a bus id (inject-xid) reaches the worker.
            # It does not read NVIDIA_VISIBLE_DEVICES (UUIDs): every GPU of the node is visible and
            # ordinal 0 is minor 0, right on one-GPU nodes only.
            {"name": "SIM_PROC_ROOT", "value": "/proc"},
        ],
    }


def frontend_pod_spec() -> dict:
    away_from_gpus = {"matchExpressions": [{"key": GPU_PRESENT_LABEL, "operator": "DoesNotExist"}]}
    return {
        "terminationGracePeriodSeconds": GRACE_S,
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": away_from_gpus}]}},
    }


def worker_pod_spec(dgd_name: str) -> dict:
    return {
        "terminationGracePeriodSeconds": GRACE_S,
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule",
                # A cordoned node (its unschedulable taint) is no domain: a drained node's workers fit
                # on the others; and only GPU nodes count (the nodeSelector).
                "nodeTaintsPolicy": "Honor",
                "nodeAffinityPolicy": "Honor",
                "labelSelector": {"matchLabels": {DGD_NAME_LABEL: dgd_name, COMPONENT_LABEL: WORKER}},
            }
        ],
    }


def lab_dgd(version: str, name: str, workers: int = 2) -> dict:
    meta = {"apiVersion": f"{DGD_GROUP}/{version}", "kind": "DynamoGraphDeployment", "metadata": {"name": name}}
    gpu = {"limits": {"nvidia.com/gpu": "1"}}
    if version == "v1alpha1":
        main = worker_container()
        return meta | {
            "spec": {
                "backendFramework": "vllm",
                "services": {
                    FRONTEND: {
                        "componentType": "frontend",
                        "replicas": 1,
                        "extraPodSpec": {**frontend_pod_spec(), "mainContainer": frontend_container()},
                    },
                    WORKER: {
                        "componentType": "worker",
                        "replicas": workers,
                        "resources": {"limits": {"gpu": "1"}},
                        "extraPodSpec": {**worker_pod_spec(name), "mainContainer": main},
                    },
                },
            }
        }
    if version == "v1beta1":
        return meta | {
            "spec": {
                "backendFramework": "vllm",
                "components": [
                    {
                        "name": FRONTEND,
                        "type": "frontend",
                        "replicas": 1,
                        "podTemplate": {"spec": {**frontend_pod_spec(), "containers": [frontend_container()]}},
                    },
                    {
                        "name": WORKER,
                        "type": "worker",
                        "replicas": workers,
                        "podTemplate": {"spec": {**worker_pod_spec(name), "containers": [worker_container() | {"resources": gpu}]}},
                    },
                ],
            }
        }
    raise ValueError(f"unknown DGD version {version!r}")
