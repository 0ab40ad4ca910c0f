"""Start-up time of the lab control plane: etcd + kube-apiserver ready + every CRD Established.

Prints `envtest_start_s: X`, the median of three cold starts (binaries already built and cached).
"""

from __future__ import annotations

import statistics
import time

from lab import tools
from lab.cluster_pool import ControlPlane
from lab.controlplane import ClusterSpec

RUNS = 3


def one_start() -> float:
    start = time.monotonic()
    with ControlPlane.start() as plane:
        plane.cluster(ClusterSpec())
        return time.monotonic() - start


def main() -> None:
    for tool in tools.ENVTEST_TOOLS:
        tools.ensure_built(tool)  # a first build is not start-up time
    print(f"envtest_start_s: {statistics.median(one_start() for _ in range(RUNS)):.2f}")


if __name__ == "__main__":
    main()
