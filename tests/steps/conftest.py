"""Real kube-apiserver clusters (one per DGD API version) for the GPU-step tests.

Built on the session control plane of tests/conftest.py; each test gets a fresh namespace and node
name so tests never see each other's objects.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from steps.run.install import NAMESPACE_ENV
from tests.support.cluster_world import FAULTFLOW, HOME, install_faultflow

_counter = itertools.count()


@dataclass
class GpuCluster:
    version: str
    kubeconfig: str
    lab: Any = None  # the lab.controlplane.Cluster (its etcd, its PKI) for tests that need them

    def kube(self):
        from steps.kube.client import connect

        return connect(self.kubeconfig)

    def faultflow(self, *args: str, timeout: float = 120, check: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONPATH": str(Path.cwd()), NAMESPACE_ENV: HOME, **(env or {})}
        result = subprocess.run(FAULTFLOW + list(args), capture_output=True, text=True, env=env, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"faultflow {' '.join(args)} -> {result.returncode}\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "PYTHONPATH": str(Path.cwd()), NAMESPACE_ENV: HOME}
        return subprocess.Popen(FAULTFLOW + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="session")
def gpu_cluster(dgd_cluster):
    """The envtest session cluster for each DGD version (tests/conftest.py `dgd_cluster`)."""
    version, cluster = dgd_cluster
    found = GpuCluster(version, str(cluster.kubeconfig), cluster)
    install_faultflow(found.kube())  # faultflow's namespace and configuration, as deploy/ installs them
    return found


@pytest.fixture
def unique():
    """A short name unique within the session (namespaces, nodes, run ids)."""
    return f"t{next(_counter)}-{os.getpid() % 10000}"
