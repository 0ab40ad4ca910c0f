"""Seeded etcd data directories: a cluster's state right after its CRDs were established.

Creating the Argo CRDs (several megabytes of schema) makes kube-apiserver spend seconds of CPU per
session. Instead, the first start of each cluster kind does it for real — a kube-apiserver of the
pinned version creates every CRD and marks it Established — and keeps the resulting etcd data in the
cache. Later sessions copy it and start from there. The key covers the binaries' build recipes and
the exact CRD content, so any change to either makes a new seed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

from lab import cache, tools
from lab.controlplane import ClusterSpec, start_cluster

SEED_FORMAT = 1  # bump when the way clusters are set up changes what a seed must contain


def seed_key(definitions: list[dict]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([SEED_FORMAT, tools.KUBE_APISERVER.recipe, tools.ETCD.recipe]).encode())
    digest.update(json.dumps(definitions, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def ensure_seed(spec: ClusterSpec, definitions: list[dict]) -> Path:
    """The seed data directory for `spec`, made on first use."""
    root = cache.cache_root() / "seeds"
    dest = root / f"{spec.slug}-{seed_key(definitions)}"
    if (dest / ".complete").exists():
        return dest / "data"
    with cache.exclusive(f"seed-{dest.name}"):
        if (dest / ".complete").exists():
            return dest / "data"
        print(f"faultflow: seeding lab cluster {spec.slug} (once per version change)", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="faultflow-seed-") as scratch:
            cluster = start_cluster(spec, Path(scratch) / "cluster")
            cluster.stop()  # SIGTERM: etcd closes its store cleanly before we copy it
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            shutil.copytree(cluster.etcd.data_dir, dest / "data")
        (dest / ".complete").touch()
        for stale in root.glob(f"{spec.slug}-*"):  # older versions of this cluster kind
            if stale != dest:
                shutil.rmtree(stale, ignore_errors=True)
    return dest / "data"
