"""`make gpu-check` without a GPU: one line saying so, exit 2, nothing built or installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def gpu_check(tmp_path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, FAULTFLOW_CACHE=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "lab.gpu_check", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def fake_smi(tmp_path, body: str) -> Path:
    path = tmp_path / "nvidia-smi"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "make_smi,message",
    [
        (lambda tmp: tmp / "absent" / "nvidia-smi", "not found"),
        (lambda tmp: fake_smi(tmp, 'echo "No devices were found"; exit 6'), "lists none (No devices were found)"),
        (lambda tmp: fake_smi(tmp, "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver' >&2; exit 9"),
         "lists none (NVIDIA-SMI has failed"),
    ],
)  # fmt: skip
def test_without_a_gpu_it_says_so_in_one_line_and_exits_2(tmp_path, make_smi, message):
    done = gpu_check(tmp_path, "--nvidia-smi", str(make_smi(tmp_path)))
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "no NVIDIA GPU here" in done.stderr and message in done.stderr
    assert not (tmp_path / "cache").exists()  # no PyTorch environment created


def test_bad_xid_list_is_exit_2(tmp_path):
    smi = fake_smi(tmp_path, 'echo "GPU 0: NVIDIA H200 (UUID: GPU-0)"')
    done = gpu_check(tmp_path, "--nvidia-smi", str(smi), "--xids", "48,999")
    assert done.returncode == 2 and "--xids must be XIDs 1-172" in done.stderr
    assert not (tmp_path / "cache").exists()
