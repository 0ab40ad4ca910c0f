"""What of the machine a real lab must leave as it found it: the host network namespace's links,
addresses, routes and iptables rules, the host mount table, the sysctls a kubelet / kube-proxy / CNI
would write, the host paths their defaults create, and the lab's own cgroups and processes.

`snapshot(lab_dir)` before `up` and after `down` must be equal (`diff` says what differs).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

# Global sysctls the components would touch (kubelet: setupKernelTunables; kube-proxy: conntrack and
# route_localnet; CNI bridge: ip_forward), read in the host's namespaces.
SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet", "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established", "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "net/netfilter/nf_conntrack_tcp_be_liberal", "net/bridge/bridge-nf-call-iptables",
)  # fmt: skip
# Defaults the components would create on a real node; the lab's nodes keep theirs private.
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/lib/containerd",
    "/run/containerd",
    "/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/usr/libexec/kubernetes",
    "/var/log/containers",
    "/var/log/pods",
    "/run/mount",
)


def _out(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _iptables() -> str:
    # Counters change with any traffic; the rules must not.
    return re.sub(r"\[\d+:\d+\]", "", "\n".join(line for line in _out(["iptables-save"]).splitlines() if not line.startswith("#")))


def _mounts() -> list[str]:
    return sorted(" ".join(line.split()[3:5]) for line in Path("/proc/1/mountinfo").read_text().splitlines())


def lab_processes(lab_dir: Path) -> list[str]:
    """Processes whose command line names the lab directory (every lab process does: its config,
    socket or data paths are there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(lab_dir) in cmdline:
            found.append(f"{entry.name} {cmdline[:120]}")
    return found


def snapshot(lab_dir: Path, cgroup_prefix: str) -> dict:
    return {
        "links": _out(["ip", "-o", "link", "show"]).replace("\\", ""),
        "addresses": _out(["ip", "-o", "addr", "show"]),
        "routes": _out(["ip", "route", "show", "table", "all"]),
        "iptables": _iptables(),
        "mounts": _mounts(),
        "sysctls": {key: _read(f"/proc/sys/{key}") for key in SYSCTLS},
        "host_paths": {path: os.path.lexists(path) for path in HOST_PATHS},
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{cgroup_prefix}*")),
        "processes": lab_processes(lab_dir),
    }


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def diff(before: dict, after: dict) -> dict:
    return {key: {"before": before[key], "after": after[key]} for key in before if before[key] != after[key]}
