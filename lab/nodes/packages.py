"""`python -m lab.nodes.packages [--check]`: the Debian packages a real lab node runs on, installed when missing.

A lab node runs Debian's containerd, runc and CNI plugins; kube-proxy programs iptables inside the
node's network namespace; images are built with mmdebstrap (the base) and umoci (the layers), the
pause image's static binary with gcc. Versions are whatever the machine's Debian release (bookworm)
serves: the release pins them, and `installed()` reports what is there.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

# package -> a file it installs that the lab uses (what `missing()` checks: cheap, no dpkg database).
PACKAGES: dict[str, str] = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",  # kube-proxy clears stale UDP flows with it
    "umoci": "/usr/bin/umoci",
    "mmdebstrap": "/usr/bin/mmdebstrap",
    "busybox-static": "/bin/busybox",
    "util-linux": "/usr/bin/unshare",
    "iproute2": "/usr/sbin/ip",
}


class PackagesMissing(RuntimeError):
    """One line: what is missing and why it cannot be installed here."""


def missing() -> list[str]:
    return [name for name, path in PACKAGES.items() if not os.path.exists(path)]


def ensure_installed() -> list[str]:
    """Install what is missing (apt-get update first); return the packages installed."""
    todo = missing()
    if not todo:
        return []
    if os.geteuid() != 0:
        raise PackagesMissing(f"faultflow: the real lab needs Debian packages {' '.join(todo)}: run as root or install them")
    if shutil.which("apt-get") is None:
        raise PackagesMissing(f"faultflow: the real lab needs {' '.join(todo)} and this machine has no apt-get: install them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"faultflow: installing {' '.join(todo)} (apt-get)", file=sys.stderr, flush=True)
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["?"]
            raise PackagesMissing(f"faultflow: `{' '.join(cmd[:2])}` failed: {last[0]}")
    if still := missing():
        raise PackagesMissing(f"faultflow: installed, yet still missing: {' '.join(still)}")
    return todo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.nodes.packages", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say what is missing (exit 1 if anything)")
    args = parser.parse_args(argv)
    if args.check:
        gone = missing()
        print(" ".join(gone) if gone else "all present")
        return 1 if gone else 0
    try:
        ensure_installed()
    except PackagesMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
