"""`faultflow run` refuses bad input with one line and exit 2 before anything runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.cli import FAULTFLOW


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([FAULTFLOW, "run", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.parametrize(
    "args, message",
    [
        (("no-such-scenario", "--lab"), "unknown scenario"),
        (("gpu-fault",), "exactly one of --lab and --kubeconfig"),
        (("gpu-fault", "--lab", "missing-lab"), "no running lab"),
        (("gpu-fault", "--kubeconfig", "missing.yaml"), "no such file"),
        (("gpu-fault", "--kubeconfig", "kubeconfig"), "runs on a node; give --node-root"),
        (("gpu-fault", "--kubeconfig", "kubeconfig", "--node-root", ".", "-p", "xid=999"), "xid='999' is not one of"),
        (("gpu-fault", "--kubeconfig", "kubeconfig", "--node-root", ".", "-p", "bogus=1"), "has no parameter bogus"),
        (("gpu-fault", "--kubeconfig", "kubeconfig", "--node-root", ".", "-p", "xid"), "expected name=value"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: tuple, message: str) -> None:
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kubeconfig"]  # no evidence dir, nothing made
