"""The lab's artifact repository: a real S3 server, configured the way Argo documents for a namespace.

The server is Versity's S3 gateway (`versitygw posix`, lab.tools.VERSITYGW), a process in the hub
namespace listening on the hub address: every pod reaches it there (a node's default route is the
hub), as a cluster reaches an S3 service outside it; nothing listens in the machine's own network
namespace. The host reaches it through a relay (lab.nodes.relay), as it reaches the API server.
Objects live under `<lab>/s3/data/<bucket>/<key>`, their metadata in a sidecar folder (no xattrs
needed from the file system).

Why not SeaweedFS: measured cold on this 2-core machine (fresh module and build caches, the same
flags as lab.gomod), SeaweedFS's `weed` (newest pseudo-version, 2026-11-09; the proxy serves no
tagged release) fetched 3.7 GB of modules (259 s) and compiled 1738 packages in 673 CPU-seconds
(~6 min on 2 idle cores): ~10 min in all. versitygw v1.8.0 fetched 361 MB (15 s) and compiled 588
packages in 163 CPU-seconds (~1.5 min). Both are Apache-2.0 and served by the Go module proxy;
MinIO's server is AGPL.

A namespace's default repository (`configure_namespace`) is Argo's documented shape: ConfigMap
`artifact-repositories` annotated `workflows.argoproj.io/default-artifact-repository: default-v1`,
its `default-v1` key an `s3:` repository whose keys come from a Secret in the same namespace. Then a
template's key-only `s3: {key: …}` artifacts need nothing else.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab import processes, tools
from lab.argo.apply import apply
from lab.argo.s3 import S3
from lab.nodes.cluster import HUB_IP, RealCluster
from lab.rest import ApiError, Rest

PORT = 7070  # versitygw's default
BUCKET = "faultflow-artifacts"
REPOSITORY_KEY = "default-v1"  # Argo's documented example name: versioned, so it can move later
CREDENTIALS_SECRET = "artifact-repository-s3"
START_TIMEOUT_S = 60


@dataclass
class ArtifactRepository:
    s3: S3  # the host's client, through the relay
    endpoint: str  # host:port as pods reach it
    bucket: str
    data: Path  # where the objects are on disk

    def repository(self) -> dict:
        """The `s3:` repository as Argo's ConfigMap holds it (credentials by reference)."""
        return {
            "s3": {
                "bucket": self.bucket,
                "endpoint": self.endpoint,
                "insecure": True,  # plain HTTP inside the lab
                "accessKeySecret": {"name": CREDENTIALS_SECRET, "key": "accessKey"},
                "secretKeySecret": {"name": CREDENTIALS_SECRET, "key": "secretKey"},
            }
        }


def start(cluster: RealCluster, bucket: str = BUCKET) -> ArtifactRepository:
    """Start the S3 server in the cluster's hub (it dies with the lab), and make the bucket."""
    if cluster.hub is None:
        raise RuntimeError("lab.argo.artifacts.start needs a started RealCluster")
    hub = cluster.hub
    binary = tools.ensure_built(tools.VERSITYGW)
    folder = cluster.folder / "s3"
    data, sidecar = folder / "data", folder / "meta"
    data.mkdir(parents=True, exist_ok=True)
    sidecar.mkdir(parents=True, exist_ok=True)
    access, secret = secrets.token_hex(10), secrets.token_hex(20)
    argv = [str(binary), "--port", f"{HUB_IP}:{PORT}", "--quiet", "posix", "--sidecar", str(sidecar), str(data)]
    # The root credentials go by environment, not argv (`ps` shows argv to every user).
    env = dict(os.environ, ROOT_ACCESS_KEY=access, ROOT_SECRET_KEY=secret)
    server = processes.start("versitygw", hub.enter() + argv, cluster.folder / "logs" / "versitygw.log", env=env)
    cluster.ledger.pid(server.popen.pid, "hub versitygw")
    cluster.control_plane["versitygw"] = server
    port_file = folder / "relay.port"
    relay = processes.start(
        "s3 relay",
        [sys.executable, "-m", "lab.nodes.relay", str(hub.pid), f"{HUB_IP}:{PORT}", str(port_file)],
        cluster.folder / "logs" / "s3-relay.log",
    )
    cluster.ledger.pid(relay.popen.pid, "s3 relay")
    cluster.control_plane["s3-relay"] = relay
    port = processes.wait_until(
        lambda: port_file.read_text() if port_file.is_file() else None, what="S3 relay port", timeout_s=30, process=relay
    )
    client = S3(f"http://127.0.0.1:{port}", access, secret)
    processes.wait_until(lambda: _try_create(client, bucket), what=f"S3 bucket {bucket}", timeout_s=START_TIMEOUT_S, process=server)
    return ArtifactRepository(s3=client, endpoint=f"{HUB_IP}:{PORT}", bucket=bucket, data=data)


def _try_create(client: S3, bucket: str) -> bool | None:
    try:
        client.create_bucket(bucket)
    except OSError:  # not listening yet
        return None
    return True


def namespace_objects(repo: ArtifactRepository, namespace: str) -> list[dict]:
    """The credentials Secret and the `artifact-repositories` ConfigMap naming the default."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": CREDENTIALS_SECRET, "namespace": namespace},
            "stringData": {"accessKey": repo.s3.access_key, "secretKey": repo.s3.secret_key},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "artifact-repositories",
                "namespace": namespace,
                "annotations": {"workflows.argoproj.io/default-artifact-repository": REPOSITORY_KEY},
            },
            "data": {REPOSITORY_KEY: yaml.safe_dump(repo.repository(), sort_keys=False)},
        },
    ]


def configure_namespace(rest: Rest, repo: ArtifactRepository, namespace: str) -> None:
    """Make `repo` the namespace's default artifact repository (created, or replaced if there)."""
    for obj in namespace_objects(repo, namespace):
        try:
            apply(rest, obj)
        except ApiError as err:
            raise RuntimeError(f"configuring the artifact repository of {namespace}: {err}") from None
