"""`python -m lab.prepare build|list`: build every pinned tool, fetch the pinned CRDs, seed the clusters.

The entry point `make envtest` runs. It sits above the tool records (`lab.tools`), the CRD sources
(`lab.crds`) and the seeds (`lab.seeds`), so none of those needs to import the others' callers.
"""

from __future__ import annotations

import argparse
import sys

from lab import gomod, tools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.prepare", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build every pinned tool, fetch every pinned CRD set, seed the default clusters (cached)")
    build.add_argument(
        "names",
        nargs="*",
        help="only these tools, every pinned version (default: the envtest "
        "tools; the real lab's are built on first use or by `make real-lab-tools`)",
    )
    sub.add_parser("list", help="print name, version and cached path of each tool")
    args = parser.parse_args(argv)

    if args.command == "list":
        for tool in tools.TOOLS:
            state = "built" if tool.is_built() else "missing"
            print(f"{tool.name}\t{tool.version}\t{tool.binary}\t{state}")
        return 0
    if unknown := sorted(set(args.names) - {tool.name for tool in tools.TOOLS}):
        parser.error(f"unknown tool {', '.join(unknown)}")
    try:
        for tool in [t for t in tools.TOOLS if t.name in args.names] if args.names else tools.ENVTEST_TOOLS:
            tools.ensure_built(tool)
        if not args.names:
            # Imported here: these need PyYAML and cryptography, `list` and tool builds do not.
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
