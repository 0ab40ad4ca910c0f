"""Small, valid DynamoGraphDeployments in both API shapes, for tests and the lab's demo."""

from __future__ import annotations

from steps.workload.dynamo import DGD_GROUP

IMAGE = "ai-dynamo/vllm-runtime:1.6.1"  # never pulled: the lab runs no containers


def example_dgd(version: str, name: str, worker_replicas: int = 1) -> dict:
    """A frontend plus one GPU worker: `spec.services` map (v1alpha1) or `spec.components` list (v1beta1)."""
    meta = {"apiVersion": f"{DGD_GROUP}/{version}", "kind": "DynamoGraphDeployment", "metadata": {"name": name}}
    if version == "v1alpha1":
        return meta | {
            "spec": {
                "backendFramework": "vllm",
                "services": {
                    "Frontend": {
                        "componentType": "frontend",
                        "replicas": 1,
                        "extraPodSpec": {"mainContainer": {"image": IMAGE, "command": ["python3", "-m", "dynamo.frontend"]}},
                    },
                    "VllmWorker": {
                        "componentType": "worker",
                        "replicas": worker_replicas,
                        "resources": {"limits": {"gpu": "1"}},
                        "extraPodSpec": {"mainContainer": {"image": IMAGE, "command": ["python3", "-m", "dynamo.vllm"]}},
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
                        "name": "Frontend",
                        "type": "frontend",
                        "replicas": 1,
                        "podTemplate": {
                            "spec": {"containers": [{"name": "main", "image": IMAGE, "command": ["python3", "-m", "dynamo.frontend"]}]}
                        },
                    },
                    {
                        "name": "VllmWorker",
                        "type": "worker",
                        "replicas": worker_replicas,
                        "podTemplate": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "main",
                                        "image": IMAGE,
                                        "command": ["python3", "-m", "dynamo.vllm"],
                                        "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                    }
                                ]
                            }
                        },
                    },
                ],
            }
        }
    raise ValueError(f"unknown DGD version {version!r}")
