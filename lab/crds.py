"""The real CRDs the lab installs: pinned upstream sources, fetched into the cache, never committed.

Each source is a Go module at a pinned version plus the CRD files inside it (`go mod download`
fetches module source, so the YAML is exactly what that release ships). Fetched files are stored as
JSON, which loads ten times faster than these multi-megabyte YAML documents.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab import cache, gomod, tools

ARGO_FULL_CRDS = tuple(
    f"manifests/base/crds/full/argoproj.io_{plural}.yaml"
    for plural in (
        "workflows",
        "workflowtemplates",
        "clusterworkflowtemplates",
        "cronworkflows",
        "workflowtaskresults",
        "workflowtasksets",
        "workflowartifactgctasks",
        "workfloweventbindings",
    )
)


@dataclass(frozen=True)
class CrdSource:
    """CRD files taken from one Go module version."""

    name: str
    module: str
    version: str
    files: tuple[str, ...]
    # go.sum-style content hash, pinned here for modules the public checksum database lacks.
    ziphash: str | None = None

    @property
    def dir(self) -> Path:
        return cache.cache_root() / "crds" / f"{self.name}-{self.version}"


@dataclass(frozen=True)
class DataFileSource:
    """A CRD file from the project's shared data folder, for upstreams the module proxy does not serve."""

    name: str
    version: str  # upstream commit the copy was taken from
    file: str  # path under shared/
    sha256: str

    @property
    def dir(self) -> Path:
        return cache.cache_root() / "crds" / f"{self.name}-{self.version}"


ARGO_V3_7 = CrdSource(
    name="argo",
    module="github.com/argoproj/argo-workflows/v3",
    version="v3.7.18",
    files=ARGO_FULL_CRDS,
)
ARGO_V4_0 = CrdSource(
    name="argo",
    module="github.com/argoproj/argo-workflows/v4",
    version="v4.0.5",
    files=ARGO_FULL_CRDS,
    ziphash=tools.ARGO_V4_ZIPHASH,
)
# Chaos Mesh publishes no tagged Go module version the proxy serves (its tags lack /v2 paths), so
# this pins a pseudo-version of master.
CHAOS_MESH = CrdSource(
    name="chaos-mesh",
    module="github.com/chaos-mesh/chaos-mesh",
    version="v0.9.1-0.20260902003049-47411975a8cb",
    files=("config/crd/bases/chaos-mesh.org_networkchaos.yaml",),
)
# github.com/ai-dynamo/dynamo/deploy/operator is not served by the module proxy reachable here, so
# the DGD CRD comes from the shared copy (ai-dynamo/dynamo commit 29a131e8, v1alpha1 only).
DYNAMO_DGD = DataFileSource(
    name="dynamo-dgd",
    version="29a131e8",
    file="data/dynamo-dgd-crd-v1alpha1.yaml",
    sha256="ff7d6fcb8e836254bc535d2ebac2ef29e6ce4a90a58acefd425b2f99b32ad2e3",
)

ARGO_SETS = {"v3.7": ARGO_V3_7, "v4.0": ARGO_V4_0}
SOURCES: tuple[CrdSource | DataFileSource, ...] = (ARGO_V3_7, ARGO_V4_0, CHAOS_MESH, DYNAMO_DGD)

DGD_NAME = "dynamographdeployments.nvidia.com"
DGD_VERSIONS = ("v1alpha1", "v1beta1")


def shared_dir_candidates() -> list[Path]:
    """Where the project's shared/ folder may be: beside or inside the checkout, or named by env."""
    repo = Path(__file__).resolve().parent.parent
    found = [Path(os.environ["FAULTFLOW_SHARED_DIR"])] if "FAULTFLOW_SHARED_DIR" in os.environ else []
    return found + [repo / "shared", repo.parent / "shared"]


def _store(dest: Path, name: str, text: str) -> None:
    docs = [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d]
    (dest / (Path(name).stem + ".json")).write_text(json.dumps(docs))


def ensure_fetched(source: CrdSource | DataFileSource) -> Path:
    """Return the folder of the source's CRDs as JSON, fetching them on first use."""
    marker = source.dir / ".complete"
    if marker.exists():
        return source.dir
    with cache.exclusive(f"crds-{source.name}-{source.version}"):
        if marker.exists():
            return source.dir
        print(f"faultflow: fetching CRDs {source.name} {source.version}", file=sys.stderr, flush=True)
        shutil.rmtree(source.dir, ignore_errors=True)
        source.dir.mkdir(parents=True)
        if isinstance(source, CrdSource):
            module = gomod.download(source.module, source.version, no_sum_check=source.ziphash is not None)
            if source.ziphash:
                gomod.verify_ziphash(module, source.ziphash)
            for rel in source.files:
                _store(source.dir, rel, (module.dir / rel).read_text())
        else:
            text = _read_data_file(source)
            _store(source.dir, source.file, text)
        marker.touch()
    return source.dir


def _read_data_file(source: DataFileSource) -> str:
    for root in shared_dir_candidates():
        path = root / source.file
        if path.is_file():
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != source.sha256:
                raise RuntimeError(f"{path}: sha256 {digest} != pinned {source.sha256}")
            return data.decode()
    tried = ", ".join(str(r / source.file) for r in shared_dir_candidates())
    raise RuntimeError(f"faultflow: CRD {source.name} not found (tried {tried}); set FAULTFLOW_SHARED_DIR")


def load(source: CrdSource | DataFileSource) -> list[dict]:
    """Every CRD object of a source, fetched first when needed."""
    folder = ensure_fetched(source)
    return [doc for path in sorted(folder.glob("*.json")) for doc in json.loads(path.read_text())]


def single_version(crd: dict, version: str) -> dict:
    """The CRD with `version` alone served and stored, and no conversion webhook.

    Upstream serves several DGD versions through the operator's conversion webhook; a test API server
    has no operator, so each version under test gets a CRD of its own.
    """
    out = copy.deepcopy(crd)
    entries = [v for v in out["spec"]["versions"] if v["name"] == version]
    if not entries:
        raise KeyError(f"{crd['metadata']['name']} has no version {version}")
    entries[0].update(served=True, storage=True)
    out["spec"]["versions"] = entries
    out["spec"].pop("conversion", None)
    return out


def dgd_crd(version: str) -> dict:
    """The DynamoGraphDeployment CRD serving exactly `version` (v1alpha1 or v1beta1)."""
    if version not in DGD_VERSIONS:
        raise ValueError(f"DGD version must be one of {DGD_VERSIONS}, not {version!r}")
    (crd,) = [c for c in load(DYNAMO_DGD) if c["metadata"]["name"] == DGD_NAME]
    served = {v["name"] for v in crd["spec"]["versions"]}
    if version in served:
        return single_version(crd, version)
    # The shared copy predates v1beta1: derive it (see dgd_v1beta1).
    from lab.dgd_v1beta1 import derive_v1beta1

    return derive_v1beta1(single_version(crd, "v1alpha1"))


def cluster_crds(dgd_version: str, argo: str) -> list[dict]:
    """Everything a lab cluster installs: the DGD at one version, an Argo set, Chaos Mesh NetworkChaos."""
    if argo not in ARGO_SETS:
        raise ValueError(f"Argo CRD set must be one of {sorted(ARGO_SETS)}, not {argo!r}")
    return [dgd_crd(dgd_version), *load(ARGO_SETS[argo]), *load(CHAOS_MESH)]
