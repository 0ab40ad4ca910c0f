"""A real control plane on loopback: one etcd, and one kube-apiserver per lab cluster.

Every cluster is its own kube-apiserver with its own etcd key prefix, so two clusters sharing the
etcd are fully isolated. That is how a test gets a v1alpha1 DGD and a v1beta1 DGD in the same
session: the upstream CRD serves both through the Dynamo operator's conversion webhook, which does
not exist here, so each cluster installs the DGD CRD at one version (see `crds.dgd_crd`).
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from lab import crds, pki, processes, tools
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


@dataclass
class Etcd:
    url: str
    process: processes.Process

    @classmethod
    def start(cls, folder: Path) -> Etcd:
        folder.mkdir(parents=True, exist_ok=True)
        client, peer = processes.free_port(), processes.free_port()
        url = f"http://127.0.0.1:{client}"
        argv = [
            str(tools.ensure_built(tools.ETCD)),
            "--name=lab",
            f"--data-dir={folder / 'data'}",
            f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=lab=http://127.0.0.1:{peer}",
            # Throw-away data: durability buys nothing and fsync costs start-up time.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
        proc = processes.start("etcd", argv, folder / "etcd.log")
        etcd = cls(url=url, process=proc)
        processes.wait_until(etcd._healthy, what="etcd health", timeout_s=START_TIMEOUT_S, process=proc)
        return etcd

    def _healthy(self) -> bool | None:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                return True if json.loads(resp.read()).get("health") == "true" else None
        except OSError:
            return None

    def _gateway(self, path: str, body: dict) -> dict:
        # etcd's JSON gateway to its gRPC KV API: no etcd client library needed.
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read())

    def revision(self) -> int:
        """The store's current revision (what kube-apiserver reports as resourceVersion)."""
        key = base64.b64encode(b"/").decode()
        return int(self._gateway("/v3/kv/range", {"key": key, "count_only": True})["header"]["revision"])

    def compact(self, revision: int | None = None) -> int:
        """Discard history before `revision` (default: now), as etcd's periodic compaction does.

        A watch resumed from an older resourceVersion then gets 410 Gone, deterministically.
        """
        target = self.revision() if revision is None else revision
        self._gateway("/v3/kv/compaction", {"revision": str(target), "physical": True})
        return target

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Cluster:
    """One kube-apiserver with its CRDs established, and how to reach it as admin."""

    spec: ClusterSpec
    server: str
    kubeconfig: Path
    pki: pki.Pki
    etcd: Etcd
    etcd_prefix: str
    process: processes.Process
    start_s: float = 0.0

    def rest(self) -> Rest:
        return Rest.with_client_cert(
            self.server, str(self.pki.ca_cert), str(self.pki.admin_cert), str(self.pki.admin_key)
        )

    def api_client(self):
        """A kubernetes ApiClient authenticated as cluster admin (no global configuration touched)."""
        from lab.kube import admin_client

        return admin_client(self)

    def stop(self) -> None:
        self.process.stop()


def _apiserver_argv(binary: Path, *, port: int, etcd: Etcd, prefix: str, keys: pki.Pki, folder: Path) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers={etcd.url}",
        f"--etcd-prefix={prefix}",
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
        # ConfigMap watches go straight to etcd, so etcd compaction expires them deterministically
        # (the watch cache would otherwise answer from its own in-memory window).
        "--watch-cache-sizes=configmaps#0",
        "--profiling=false",
    ]


def start_cluster(spec: ClusterSpec, etcd: Etcd, folder: Path) -> Cluster:
    start = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    keys = pki.create(folder / "pki")
    port = processes.free_port()
    prefix = f"/registry-{spec.slug}"
    binary = tools.ensure_built(tools.KUBE_APISERVER)
    argv = _apiserver_argv(binary, port=port, etcd=etcd, prefix=prefix, keys=keys, folder=folder)
    proc = processes.start("kube-apiserver", argv, folder / "kube-apiserver.log")
    server = f"https://127.0.0.1:{port}"
    kubeconfig = folder / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(server, keys))
    cluster = Cluster(spec, server, kubeconfig, keys, etcd, prefix, proc)
    try:
        rest = cluster.rest()
        processes.wait_until(
            lambda: True if rest.status("/readyz") == 200 else None,
            what="kube-apiserver /readyz",
            timeout_s=START_TIMEOUT_S,
            process=proc,
        )
        from lab.crd_install import install

        install(rest, crds.cluster_crds(spec.dgd_version, spec.argo), timeout_s=START_TIMEOUT_S)
    except BaseException:
        proc.stop()
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
            "users": [
                {"name": "admin", "user": {"client-certificate": str(keys.admin_cert), "client-key": str(keys.admin_key)}}
            ],
            "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}],
            "current-context": "lab",
        },
        indent=2,
    )


@dataclass
class ControlPlane:
    """etcd plus lazily started clusters, all under one temp folder removed on close."""

    folder: Path
    etcd: Etcd
    clusters: dict[ClusterSpec, Cluster] = field(default_factory=dict)
    _owns_folder: bool = True

    @classmethod
    def start(cls, folder: Path | None = None) -> ControlPlane:
        owns = folder is None
        root = Path(tempfile.mkdtemp(prefix="faultflow-lab-")) if folder is None else folder
        try:
            etcd = Etcd.start(root / "etcd")
        except BaseException:
            if owns:
                shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(folder=root, etcd=etcd, _owns_folder=owns)

    def cluster(self, spec: ClusterSpec = ClusterSpec()) -> Cluster:
        """The cluster for `spec`, started (CRDs established) on first request."""
        if spec not in self.clusters:
            self.clusters[spec] = start_cluster(spec, self.etcd, self.folder / spec.slug)
        return self.clusters[spec]

    def close(self) -> None:
        for cluster in self.clusters.values():
            cluster.stop()
        self.clusters.clear()
        self.etcd.stop()
        if self._owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
