"""A real control plane on loopback: per lab cluster, one etcd and one kube-apiserver.

Several clusters can run in one session, each fully isolated. That is how a test gets a v1alpha1
DGD and a v1beta1 DGD side by side: upstream serves both through the Dynamo operator's conversion
webhook, which does not exist here, so each cluster installs the DGD CRD at one version
(`crds.dgd_crd`).

Start-up: a cluster starts from a cached etcd data directory ("seed") in which a real
kube-apiserver of the pinned version already created and established the cluster's CRDs (see
`seeds`); creating the multi-megabyte Argo CRDs from scratch costs seconds of CPU per session.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from lab import crds, pki, processes, tools
from lab.crd_install import install, wait_established, wait_served
from lab.etcd import Etcd
from lab.rest import Rest

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT_S = 120  # generous for a loaded 2-core machine; start-up is normally a few seconds


@dataclass(frozen=True)
class ClusterSpec:
    """What a lab cluster serves: the DGD API version and the Argo CRD set (`crds.ARGO_SETS`)."""

    dgd_version: str = "v1beta1"
    argo: str = "v4.0"

    @property
    def slug(self) -> str:
        return f"dgd-{self.dgd_version}-argo-{self.argo}".replace(".", "")

    def crds(self) -> list[dict]:
        return crds.cluster_crds(self.dgd_version, self.argo)


@dataclass
class Cluster:
    """One kube-apiserver (and its etcd) with its CRDs established, and how to reach it as admin."""

    spec: ClusterSpec
    server: str
    kubeconfig: Path
    pki: pki.Pki
    etcd: Etcd
    process: processes.Process
    start_s: float = 0.0

    def rest(self) -> Rest:
        return Rest.with_client_cert(self.server, str(self.pki.ca_cert), str(self.pki.admin_cert), str(self.pki.admin_key))

    def stop(self) -> None:
        # kube-apiserver first: etcd must outlive its clients to shut down cleanly.
        self.process.stop()
        self.etcd.stop()


def apiserver_argv(
    binary: Path, *, port: int, etcd_url: str, keys: pki.Pki, folder: Path, overrides: dict[str, str | None] | None = None
) -> list[str]:
    """The envtest cluster's kube-apiserver command line; `overrides` replaces flags (`--name`: value) or,
    with None, drops them, and adds the rest: how a real lab (`lab.nodes.cluster`) derives its own."""
    argv = _apiserver_argv(binary, port=port, etcd_url=etcd_url, keys=keys, folder=folder)
    if not overrides:
        return argv
    left = dict(overrides)
    out = [argv[0]]
    for arg in argv[1:]:
        name = arg.split("=", 1)[0]
        if name not in left:
            out.append(arg)
        elif (value := left.pop(name)) is not None:
            out.append(f"{name}={value}")
    out += [f"{name}={value}" for name, value in left.items() if value is not None]
    return out


def _apiserver_argv(binary: Path, *, port: int, etcd_url: str, keys: pki.Pki, folder: Path) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # The endpoint reconciler refuses loopback addresses; nothing here routes to the Service anyway.
        "--endpoint-reconciler-type=none",
        f"--secure-port={port}",
        f"--cert-dir={folder / 'certs'}",
        f"--tls-cert-file={keys.serving_cert}",
        f"--tls-private-key-file={keys.serving_key}",
        f"--client-ca-file={keys.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={keys.sa_public_key}",
        f"--service-account-signing-key-file={keys.sa_private_key}",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",  # the XID step runs a privileged pod
        # ConfigMap and Node watches go straight to etcd, so etcd compaction expires them
        # deterministically (the watch cache would otherwise answer from its own in-memory window).
        "--watch-cache-sizes=configmaps#0,nodes#0",
        # pods/log is proxied to the node's kubelet (a kubelet simulator here, lab/kubelet_logs.py):
        # the API server authenticates with a client certificate and checks the kubelet's serving one.
        f"--kubelet-client-certificate={keys.kubelet_client_cert}",
        f"--kubelet-client-key={keys.kubelet_client_key}",
        f"--kubelet-certificate-authority={keys.ca_cert}",
        # Simulated nodes share one host: reach their kubelet by InternalIP (127.0.0.1), not by the
        # node name, which no resolver knows (many clusters set this order too).
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--profiling=false",
    ]


def start_cluster(spec: ClusterSpec, folder: Path, *, seed: Path | None = None) -> Cluster:
    """Start etcd + kube-apiserver for `spec` and return once every CRD is Established and served.

    `seed` is an etcd data directory that already holds the CRDs (`lab.seeds.ensure_seed`); without
    one the CRDs are created here.
    """
    start = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    definitions = spec.crds()
    etcd = Etcd.start(folder / "etcd", seed=seed)
    try:
        keys = pki.create(folder / "pki")
        port = processes.free_port()
        binary = tools.ensure_built(tools.KUBE_APISERVER)
        argv = apiserver_argv(binary, port=port, etcd_url=etcd.url, keys=keys, folder=folder)
        proc = processes.start("kube-apiserver", argv, folder / "kube-apiserver.log")
    except BaseException:
        etcd.stop()
        raise
    server = f"https://127.0.0.1:{port}"
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(server, keys))
    cluster = Cluster(spec, server, kubeconfig, keys, etcd, proc)
    try:
        rest = cluster.rest()
        processes.wait_until(
            lambda: True if rest.status("/readyz") == 200 else None,
            what="kube-apiserver /readyz",
            timeout_s=START_TIMEOUT_S,
            process=proc,
        )
        if seed is None:
            install(rest, definitions, timeout_s=START_TIMEOUT_S)
        else:  # the seed holds them; check rather than trust it
            wait_established(rest, {d["metadata"]["name"] for d in definitions}, timeout_s=START_TIMEOUT_S)
        wait_served(rest, definitions, timeout_s=START_TIMEOUT_S)
    except BaseException:
        cluster.stop()
        raise
    cluster.start_s = time.monotonic() - start
    return cluster


def _kubeconfig(server: str, keys: pki.Pki) -> str:
    # Paths rather than inline data: readable, and every client (kubectl, python) accepts them.
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lab", "cluster": {"server": server, "certificate-authority": str(keys.ca_cert)}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(keys.admin_cert), "client-key": str(keys.admin_key)}}],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}],
            "current-context": "lab",
        },
        indent=2,
    )
