"""`python -m lab.nodes up|down --dir DIR`: a real lab cluster by hand (the foundation `faultflow lab`
moves onto).

`up` starts the cluster, prints its kubeconfig and figures (`node_ready_s`, `lab_up_s`) and holds it
until SIGTERM/SIGINT; everything it started dies with it. `up --world` also starts the GPU world's
simulators and the lab's DGD on it (`lab.simulators.world`). `down` removes what a crashed `up` left
(processes by recorded pid and start time, cgroups) and the directory.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.nodes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("--dir", required=True, type=Path)
    up.add_argument("--gpu-nodes", type=int, default=3)
    up.add_argument("--no-coredns", action="store_true")
    up.add_argument("--world", action="store_true", help="the simulators and the lab's DGD too (lab.simulators.world)")
    down = sub.add_parser("down")
    down.add_argument("--dir", required=True, type=Path)
    args = parser.parse_args(argv)

    from lab.nodes.cluster import RealCluster, figures_line, plan_nodes, teardown, teardown_summary
    from lab.nodes.packages import PackagesMissing

    if args.command == "down":
        print(f"down: {teardown_summary(teardown(args.dir))}, {args.dir} removed")
        shutil.rmtree(args.dir, ignore_errors=True)
        return 0
    from lab.nodes.cluster import ledger_of

    if live := ledger_of(args.dir.absolute()).live_pids():
        print(f"lab.nodes: a lab is up in {args.dir} ({len(live)} of its processes run): `down` it first", file=sys.stderr)
        return 2
    if args.gpu_nodes < 0 or args.gpu_nodes > 16:
        print("lab.nodes: --gpu-nodes must be 0..16", file=sys.stderr)
        return 2
    if args.world and (args.no_coredns or args.gpu_nodes < 1):
        print("lab.nodes: --world needs CoreDNS and at least one GPU node", file=sys.stderr)
        return 2
    extra: tuple = ()
    if args.world:
        from lab.simulators import world

        extra = world.IMAGES
    try:
        cluster = RealCluster(args.dir, plan_nodes(args.gpu_nodes), coredns=not args.no_coredns, extra_images=extra).start()
    except PackagesMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"kubeconfig: {cluster.kubeconfig}")
    if args.world:
        try:
            handle = world.start(cluster)
        except BaseException:
            cluster.stop()
            raise
        cluster.figures.update(handle.figures)
        print(f"frontend (from pods): {handle.frontend_url}")
    print(f"figures: {figures_line(cluster.figures)}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        print(f"stopped: {teardown_summary(cluster.stop())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
