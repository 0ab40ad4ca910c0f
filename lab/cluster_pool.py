"""Lab clusters started on demand, one per `ClusterSpec`, from cached etcd seeds (`lab.seeds`).

The tests' session fixture and the benchmarks share one pool; each spec's cluster starts on its
first request and every cluster stops when the pool closes.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lab import processes
from lab.controlplane import Cluster, ClusterSpec, start_cluster
from lab.seeds import ensure_seed


@dataclass
class ControlPlane:
    """Lab clusters, started on first request, all under one temp folder removed on close."""

    folder: Path
    seeded: bool = True
    clusters: dict[ClusterSpec, Cluster] = field(default_factory=dict)
    _owns_folder: bool = False

    @classmethod
    def start(cls, folder: Path | None = None, *, seeded: bool = True) -> ControlPlane:
        if folder is None:
            return cls(Path(tempfile.mkdtemp(prefix="faultflow-lab-")), seeded, _owns_folder=True)
        return cls(folder, seeded)

    def cluster(self, spec: ClusterSpec = ClusterSpec()) -> Cluster:
        """The cluster for `spec`, started (CRDs established) on first request."""
        if spec not in self.clusters:
            self.clusters[spec] = start_cluster(spec, self.folder / spec.slug, seed=ensure_seed(spec, spec.crds()) if self.seeded else None)
        return self.clusters[spec]

    def close(self) -> None:
        clusters = list(self.clusters.values())
        processes.stop_all([c.process for c in clusters])
        processes.stop_all([c.etcd.process for c in clusters])
        self.clusters.clear()
        if self._owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
