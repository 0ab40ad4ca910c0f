"""The pinned list of binaries the lab builds from Go source (`python -m lab.prepare build` builds them).

One record per tool: adding kwok or Argo's workflow-controller is one more entry.
Each lands in `<cache>/<name>-<version>/<name>` and is built once per version.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab import cache, gomod

_LATER_FIELDS = ("placeholders", "symlinks")


@dataclass(frozen=True)
class GoTool:
    name: str  # binary name, and the cache folder's prefix
    module: str  # Go module that holds the main package
    version: str
    package: str  # import path of the main package
    # Version given to every module the upstream go.mod replaces with a local path (its siblings
    # published from the same repository at the same release).
    sibling_version: str
    extra_replaces: tuple[tuple[str, str], ...] = ()
    # `-X importpath.name=value` link-time settings, e.g. the version a server reports.
    link_vars: tuple[tuple[str, str], ...] = ()
    # go.sum-style content hash, pinned here for modules the public checksum database lacks
    # (e.g. Argo Workflows v4); None: the checksum database vouches for the module.
    ziphash: str | None = None
    # Files, relative to the module's root, that the package embeds but the module zip lacks because
    # a release generates them before compiling; built with each one present and empty.
    placeholders: tuple[str, ...] = ()
    # (link, target) pairs, relative to the module's root: files that are symlinks in the upstream
    # repository, which module zips drop; each link is built as a copy of its target.
    symlinks: tuple[tuple[str, str], ...] = ()

    @property
    def dir(self) -> Path:
        return cache.cache_root() / f"{self.name}-{self.version}"

    @property
    def binary(self) -> Path:
        return self.dir / self.name

    @property
    def recipe(self) -> str:
        """Everything the build depends on besides the toolchain: a change means a rebuild."""
        fields = dataclasses.asdict(self)
        # Fields added later are left out while unset, so adding one keeps every existing build (and
        # the etcd seeds keyed by their recipes) valid in the cache all clones share.
        for name in _LATER_FIELDS:
            if not fields[name]:
                del fields[name]
        return json.dumps(fields, sort_keys=True)

    def is_built(self) -> bool:
        recipe = self.dir / "recipe.json"
        return self.binary.is_file() and recipe.is_file() and recipe.read_text() == self.recipe


# Kubernetes' own integration tests run 1.37 against etcd 3.7.0 (hack/lib/etcd.sh), so we do too.
KUBE_APISERVER = GoTool(
    name="kube-apiserver",
    module="k8s.io/kubernetes",
    version="v1.37.2",
    package="k8s.io/kubernetes/cmd/kube-apiserver",
    sibling_version="v0.37.2",
    # kube's own build stamps these; without them /version says v0.0.0-master.
    link_vars=(
        ("k8s.io/component-base/version.gitVersion", "v1.37.2"),
        ("k8s.io/component-base/version.gitMajor", "1"),
        ("k8s.io/component-base/version.gitMinor", "37"),
        ("k8s.io/component-base/version.gitTreeState", "clean"),
    ),
)
ETCD = GoTool(
    name="etcd",
    module="go.etcd.io/etcd/server/v3",
    version="v3.7.0",
    package="go.etcd.io/etcd/server/v3",
    sibling_version="v3.7.0",
)


# Argo Workflows v4 is not in the public checksum database; lab.crds fetches the same module.
ARGO_V4_ZIPHASH = "h1:/1lru5oXUd+k6KEDUps6rLX5OKfi1jTfabgXTly/VFU="


def _argo_binary(
    name: str,
    major: str,
    version: str,
    commit: str,
    *,
    ziphash: str | None = None,
    replaces: tuple[tuple[str, str], ...] = (),
    placeholders: tuple[str, ...] = (),
    symlinks: tuple[tuple[str, str], ...] = (),
) -> GoTool:
    """One binary of one Argo Workflows release (`cmd/<name>`), stamped as the release Makefile does."""
    module = f"github.com/argoproj/argo-workflows/{major}"
    return GoTool(
        name=name,
        module=module,
        version=version,
        package=f"{module}/cmd/{name}",
        sibling_version=version,  # no local replaces upstream
        extra_replaces=replaces,
        # What the release Makefile stamps; `<name> version` then prints the plain tag.
        link_vars=(
            (f"{module}.version", version),
            (f"{module}.gitTag", version),
            (f"{module}.gitCommit", commit),
            (f"{module}.gitTreeState", "clean"),
        ),
        ziphash=ziphash,
        placeholders=placeholders,
        symlinks=symlinks,
    )


def _argo_cli(major: str, version: str, commit: str, **kw) -> GoTool:
    """The `argo` CLI of one release, as its Makefile builds it without the UI (STATIC_FILES=false).

    `cmd/argo` embeds the UI bundle (`ui/dist/app`, `//go:embed` in ui/embed.go) for `argo server`;
    the module zip has no bundle, and the Makefile's non-UI build `touch`es ui/dist/app/index.html,
    so the build gets that one empty file too (lab.gomod.copy_with_placeholders). Linting never
    serves the UI.
    """
    return _argo_binary("argo", major, version, commit, placeholders=("ui/dist/app/index.html",), **kw)


# The CLIs that lint what we render, for each Argo line we render for (3.6+ via 3.7, and 4.x). The
# commits are the tags' as the module proxy reports them (`Origin.Hash` of `go mod download -json`).
ARGO_CLI_V3_7 = _argo_cli(
    "v3",
    "v3.7.18",
    "66e32e5cc367f223e2ecf4fbe852b95eaed83034",
    # v3.7's go.mod replaces tablewriter with v0.0.5; a replace applies only in the main module, so
    # the wrapper repeats it to build what the release built (v4's go.mod has no replaces).
    replaces=(("github.com/olekukonko/tablewriter", "github.com/olekukonko/tablewriter v0.0.5"),),
)
ARGO_CLI_V4_0 = _argo_cli("v4", "v4.0.5", "0ab1452144d8f4d57c50b37ce50dad218868e950", ziphash=ARGO_V4_ZIPHASH)
ARGO_CLIS = {"v3.7": ARGO_CLI_V3_7, "v4.0": ARGO_CLI_V4_0}

# `workflow/executor/osspecific/signal_linux.go` is a symlink to signal_darwin.go in Argo's git; the
# module zip drops it, and argoexec then fails to compile (`undefined: Setpgid`).
_ARGOEXEC_SYMLINKS = (("workflow/executor/osspecific/signal_linux.go", "signal_darwin.go"),)


@dataclass(frozen=True)
class ArgoLine:
    """What the real lab runs of one Argo line: its controller and its executor (the CLI is ARGO_CLIS')."""

    controller: GoTool
    executor: GoTool


def _argo_line(cli: GoTool) -> ArgoLine:
    major = cli.module.rsplit("/", 1)[1]
    commit = dict(cli.link_vars)[f"{cli.module}.gitCommit"]
    return ArgoLine(
        controller=_argo_binary("workflow-controller", major, cli.version, commit, ziphash=cli.ziphash, replaces=cli.extra_replaces),
        executor=_argo_binary(
            "argoexec", major, cli.version, commit, ziphash=cli.ziphash, replaces=cli.extra_replaces, symlinks=_ARGOEXEC_SYMLINKS
        ),
    )


ARGO_LINES = {line: _argo_line(cli) for line, cli in ARGO_CLIS.items()}


def _kube_component(name: str) -> GoTool:
    """One more binary of the same Kubernetes release as kube-apiserver, built the same way (its Go
    build cache makes each later component a fraction of the first build)."""
    return dataclasses.replace(KUBE_APISERVER, name=name, package=f"k8s.io/kubernetes/cmd/{name}")


# The real lab's nodes and the rest of its control plane (lab.nodes, lab.controlplane's "real" kind).
KUBELET = _kube_component("kubelet")
KUBE_CONTROLLER_MANAGER = _kube_component("kube-controller-manager")
KUBE_SCHEDULER = _kube_component("kube-scheduler")
KUBE_PROXY = _kube_component("kube-proxy")
# What a user installs faultflow with (`kubectl apply -k`, lab.argo.faultflow): the same release as the
# API server it talks to, so client and server skew is nil.
KUBECTL = _kube_component("kubectl")
# `kubectl apply -k` runs kustomize built into kubectl; the standalone binary builds the deploy/ base in
# tests that check what it renders. v5.8.1: the newest release whose go.mod a Go 1.26 toolchain builds
# (v5.8.2+ need Go 1.27). Its go.mod replaces nothing, so the sibling version is never used.
KUSTOMIZE = GoTool(
    name="kustomize",
    module="sigs.k8s.io/kustomize/kustomize/v5",
    version="v5.8.1",
    package="sigs.k8s.io/kustomize/kustomize/v5",
    sibling_version="v5.8.1",
)
# Cluster DNS for Service names. Its go.mod replaces nothing, so there are no siblings to pin.
COREDNS = GoTool(
    name="coredns",
    module="github.com/coredns/coredns",
    version="v1.14.7",
    package="github.com/coredns/coredns",
    sibling_version="v1.14.7",
)

# What the envtest clusters (unit and scenario tests) need; `lab.prepare build --envtest` builds only these.
ENVTEST_TOOLS: tuple[GoTool, ...] = (ETCD, KUBE_APISERVER, ARGO_CLI_V3_7, ARGO_CLI_V4_0, KUSTOMIZE)
# What a real lab (`lab.nodes`) adds, smallest first so the cheap ones are ready early.
REAL_CLUSTER_TOOLS: tuple[GoTool, ...] = (KUBE_SCHEDULER, KUBE_PROXY, KUBE_CONTROLLER_MANAGER, KUBELET, COREDNS, KUBECTL)
# The real lab's artifact repository (lab.argo.artifacts): Versity's S3 gateway (Apache-2.0), a
# production S3 server over a POSIX folder. Chosen over SeaweedFS, whose `weed` pulls in every cloud
# SDK: ~10 min cold against ~1.5 (figures in lab/argo/artifacts.py); MinIO's server is AGPL.
VERSITYGW = GoTool(
    name="versitygw",
    module="github.com/versity/versitygw",
    version="v1.8.0",
    package="github.com/versity/versitygw/cmd/versitygw",
    sibling_version="v1.8.0",  # its go.mod replaces nothing
    link_vars=(("main.Version", "v1.8.0"),),  # what its Makefile stamps (`versitygw --version`)
)

# Real Argo in the real lab (lab.argo): the v4 line first, the one the default tests run.
ARGO_LAB_TOOLS: tuple[GoTool, ...] = (VERSITYGW,) + tuple(
    tool for line in ("v4.0", "v3.7") for tool in (ARGO_LINES[line].executor, ARGO_LINES[line].controller)
)
TOOLS: tuple[GoTool, ...] = ENVTEST_TOOLS + REAL_CLUSTER_TOOLS + ARGO_LAB_TOOLS


def by_name(name: str) -> GoTool:
    for tool in TOOLS:
        if tool.name == name:
            return tool
    raise KeyError(name)


def ensure_built(tool: GoTool) -> Path:
    """Return the tool's binary, building it first when the cache does not have it."""
    if tool.is_built():
        return tool.binary
    with cache.exclusive(f"{tool.name}-{tool.version}"):
        if tool.is_built():  # another process built it while we waited for the lock
            return tool.binary
        gomod.go_binary()  # fail with the one-line install hint before announcing a build
        tool.dir.mkdir(parents=True, exist_ok=True)
        log = tool.dir / "build.log"
        print(
            f"faultflow: building {tool.name} {tool.version} from source into {tool.dir} (first build only: a few minutes on 2 cores)",
            file=sys.stderr,
            flush=True,
        )
        start = time.monotonic()
        module = gomod.download(tool.module, tool.version, no_sum_check=tool.ziphash is not None)
        if tool.ziphash:
            gomod.verify_ziphash(module, tool.ziphash)
        gomod.build_binary(
            module,
            tool.package,
            tool.binary,
            replace_version=tool.sibling_version,
            extra_replaces=tool.extra_replaces,
            link_vars=tool.link_vars,
            unchecked=(tool.module,) if tool.ziphash else (),
            placeholders=tool.placeholders,
            symlinks=tool.symlinks,
            log=log,
            label=f"{tool.name} {tool.version}",
        )
        (tool.dir / "recipe.json").write_text(tool.recipe)
        print(f"faultflow: built {tool.name} in {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
    return tool.binary
