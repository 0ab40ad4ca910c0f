"""The real lab's parts that need no cluster: namespace holders, the ledger, flags, the package step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import controlplane, pki
from lab.nodes import ledger as L
from lab.nodes import namespaces, packages


def test_apiserver_overrides_replace_drop_and_add_flags(tmp_path):
    keys = pki.create(tmp_path / "pki")
    argv = controlplane.apiserver_argv(
        Path("/x/kube-apiserver"),
        port=1,
        etcd_url="http://e",
        keys=keys,
        folder=tmp_path,
        overrides={
            "--authorization-mode": "Node,RBAC",
            "--endpoint-reconciler-type": None,
            "--enable-admission-plugins": "NodeRestriction",
        },
    )
    assert "--authorization-mode=Node,RBAC" in argv and "--authorization-mode=RBAC" not in argv
    assert not any(a.startswith("--endpoint-reconciler-type") for a in argv)
    assert argv[-1] == "--enable-admission-plugins=NodeRestriction"


def test_a_kept_ca_issues_node_certificates(tmp_path):
    keys = pki.create(tmp_path, keep_ca_key=True, serving_ips=("10.250.0.1",))
    crt, key = keys.issue("node-a", "system:node:a", "system:nodes")
    out = subprocess.run(["openssl", "verify", "-CAfile", str(keys.ca_cert), str(crt)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (key.stat().st_mode & 0o777) == 0o600
    with pytest.raises(ValueError):
        pki.create(tmp_path / "nokey").issue("x", "y")


def test_teardown_kills_recorded_processes_only_when_pid_and_start_time_match(tmp_path):
    ledger = L.Ledger(tmp_path / "made.jsonl")
    ours = subprocess.Popen(["sleep", "600"])
    ledger.pid(ours.pid, "ours")
    # A record whose pid is alive but whose start time differs (a recycled pid): never signalled.
    ledger._append({"kind": "pid", "pid": os.getpid(), "start": L.start_time(os.getpid()) + 1, "name": "recycled"})
    result = L.teardown(ledger)
    assert ours.wait(10) == -9
    assert result["killed"] == ["ours"]
    assert L.teardown(ledger)["killed"] == []  # twice is harmless


def test_a_line_cut_short_by_a_crash_is_skipped(tmp_path):
    path = tmp_path / "made.jsonl"
    path.write_text('{"kind": "cgroup", "path": "/nonexistent/x"}\n{"kind": "pid", "pi')
    assert L.Ledger(path).entries() == [{"kind": "cgroup", "path": "/nonexistent/x"}]


def test_a_node_namespace_has_its_own_pids_network_and_kernel_log(tmp_path):
    ledger = L.Ledger(tmp_path / "made.jsonl")
    ns = namespaces.hold("n", tmp_path / "n", ledger, mounts=[{"type": "tmpfs", "target": "/run"}], kmsg_log=tmp_path / "n" / "kmsg.log")
    try:
        out = ns.run(
            [
                "sh",
                "-c",
                "echo faultflow-ns-marker > /dev/kmsg; ls /proc | grep -c '^[0-9]'; ip -o link; ls /run | wc -l; readlink /proc/1/exe",
            ]
        )
        count, *rest = out.splitlines()
        assert int(count) < 10  # init, nsenter's child and this shell's: not the machine's processes
        assert [line.split()[1] for line in rest if ": " in line] == ["lo:"]
        assert "python" in rest[-1]
        namespaces_dir = tmp_path / "n"
        from lab.processes import wait_until

        wait_until(
            lambda: True if b"faultflow-ns-marker" in (namespaces_dir / "kmsg.log").read_bytes() else None,
            what="marker on the pty",
            timeout_s=5,
        )
        holder = ns.pid
    finally:
        ns.stop()
    from lab.processes import wait_until

    wait_until(lambda: True if L.start_time(holder) is None else None, what="holder gone", timeout_s=10)


def test_missing_packages_without_root_is_one_line(monkeypatch):
    monkeypatch.setattr(packages, "PACKAGES", {"no-such-package": "/nonexistent/faultflow"})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(packages.PackagesMissing) as err:
        packages.ensure_installed()
    assert "\n" not in str(err.value) and "no-such-package" in str(err.value)


def test_packages_cli_exits_2_with_one_line(tmp_path):
    # Same refusal through the entry point the Makefile runs, as a non-root user would see it.
    code = (
        "import os, sys; from lab.nodes import packages as p; p.PACKAGES={'nope': '/nonexistent/x'}; "
        "os.geteuid=lambda: 1000; sys.exit(p.main([]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_a_real_lab_does_not_start_over_a_running_one(tmp_path):
    from lab.nodes.cluster import RealCluster, ledger_of

    running = subprocess.Popen(["sleep", "600"])
    try:
        ledger_of(tmp_path).pid(running.pid, "a running lab's process")
        with pytest.raises(RuntimeError, match="already up"):
            RealCluster(tmp_path, []).start()
        assert running.poll() is None  # left alone
    finally:
        running.kill()
        running.wait()
    running2 = subprocess.Popen(["sleep", "600"])
    try:
        ledger_of(tmp_path).pid(running2.pid, "a running lab's process")
        out = subprocess.run([sys.executable, "-m", "lab.nodes", "up", "--dir", str(tmp_path)], capture_output=True, text=True)
        assert out.returncode == 2 and "`down` it first" in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert running2.poll() is None
    finally:
        running2.kill()
        running2.wait()
