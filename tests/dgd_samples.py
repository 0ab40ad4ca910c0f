"""Sample workloads in each shape the shim is injected into (shared by unit and cluster tests)."""

import copy


def dgd_v1alpha1(name="vllm-disagg", namespace="default"):
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backendFramework": "vllm",
            "services": {
                "Frontend": {
                    "componentType": "frontend",
                    "replicas": 1,
                    "extraPodSpec": {"mainContainer": {"image": "runtime:1", "args": ["-m", "dynamo.frontend"]}},
                },
                "VllmDecodeWorker": {
                    "componentType": "worker",
                    "subComponentType": "decode",
                    "replicas": 2,
                    "resources": {"limits": {"gpu": "1"}},
                    "extraPodSpec": {
                        "mainContainer": {
                            "image": "runtime:1",
                            "env": [{"name": "LD_PRELOAD", "value": "/usr/lib/libjemalloc.so"}, {"name": "A", "value": "1"}],
                        },
                        "volumes": [{"name": "cache", "emptyDir": {}}],
                    },
                },
                # No extraPodSpec at all: everything we add must be created and later dropped again.
                "VllmPrefillWorker": {"componentType": "prefill", "replicas": 1, "resources": {"limits": {"gpu": "1"}}},
            },
        },
    }


def dgd_v1beta1(name="vllm-agg", namespace="default"):
    return {
        "apiVersion": "nvidia.com/v1beta1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backendFramework": "vllm",
            "components": [
                {
                    "name": "Frontend",
                    "type": "frontend",
                    "replicas": 1,
                    "podTemplate": {"spec": {"containers": [{"name": "main", "image": "runtime:1"}]}},
                },
                {
                    "name": "worker",
                    "type": "worker",
                    "replicas": 1,
                    "podTemplate": {
                        "spec": {
                            "containers": [
                                {"name": "sidecar", "image": "side:1"},
                                {
                                    "name": "main",
                                    "image": "runtime:1",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                    "env": [{"name": "B", "value": "2"}],
                                },
                            ]
                        }
                    },
                },
            ],
        },
    }


def deployment(name="plain-worker", namespace="default"):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "runtime:1"}]},
            },
        },
    }


def no_gpu_workers(obj):
    obj = copy.deepcopy(obj)
    if "services" in obj["spec"]:
        obj["spec"]["services"] = {"Frontend": obj["spec"]["services"]["Frontend"]}
    else:
        obj["spec"]["components"] = obj["spec"]["components"][:1]
    return obj
