"""The pinned list of binaries the lab builds from Go source, and `python -m lab.tools build`.

One record per tool: adding kwok, Argo's workflow-controller or the `argo` CLI is one more entry.
Each lands in `<cache>/<name>-<version>/<name>` and is built once per version.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab import cache, gomod


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

    @property
    def dir(self) -> Path:
        return cache.cache_root() / f"{self.name}-{self.version}"

    @property
    def binary(self) -> Path:
        return self.dir / self.name

    @property
    def recipe(self) -> str:
        """Everything the build depends on besides the toolchain: a change means a rebuild."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

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

TOOLS: tuple[GoTool, ...] = (ETCD, KUBE_APISERVER)


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
            f"faultflow: building {tool.name} {tool.version} from source into {tool.dir} "
            "(first build only: a few minutes on 2 cores)",
            file=sys.stderr,
            flush=True,
        )
        start = time.monotonic()
        module = gomod.download(tool.module, tool.version)
        gomod.build_binary(
            module,
            tool.package,
            tool.binary,
            replace_version=tool.sibling_version,
            extra_replaces=tool.extra_replaces,
            link_vars=tool.link_vars,
            log=log,
            label=f"{tool.name} {tool.version}",
        )
        (tool.dir / "recipe.json").write_text(tool.recipe)
        print(f"faultflow: built {tool.name} in {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
    return tool.binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.tools", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build every pinned tool, fetch every pinned CRD set, seed the default clusters (cached)")
    build.add_argument("names", nargs="*", help="only these tools (default: all)")
    sub.add_parser("list", help="print name, version and cached path of each tool")
    args = parser.parse_args(argv)

    # Imported here: crds needs PyYAML, while `list` must work with the standard library alone.
    if args.command == "list":
        for tool in TOOLS:
            state = "built" if tool.is_built() else "missing"
            print(f"{tool.name}\t{tool.version}\t{tool.binary}\t{state}")
        return 0
    try:
        for tool in [by_name(n) for n in args.names] if args.names else TOOLS:
            ensure_built(tool)
        if not args.names:
            from lab import crds
            from lab.controlplane import ClusterSpec
            from lab.seeds import ensure_seed

            for source in crds.SOURCES:
                crds.ensure_fetched(source)
            for version in crds.DGD_VERSIONS:  # the clusters the tests start
                spec = ClusterSpec(dgd_version=version)
                ensure_seed(spec, spec.crds())
    except gomod.GoMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
