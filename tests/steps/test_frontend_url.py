"""Issue 15, Low: `frontend-url` could point anywhere. The steps that send the run's traffic
(verify-inference, load) refuse a host that is not an in-cluster Service name, a cluster IP or
loopback, unless `--allow-external-frontend`: one line, exit 2, nothing written."""

from __future__ import annotations

import pytest

from steps.commands._inference import in_cluster_host
from tests.cli import faultflow

REFUSED = ("169.254.169.254", "example.com", "frontend.dynamo", "8.8.8.8", "[fe80::1]", "0.0.0.0")
ACCEPTED = (
    "vllm-agg-frontend",
    "vllm-agg-frontend.dynamo.svc",
    "vllm-agg-frontend.dynamo.svc.cluster.local",
    "10.96.0.12",
    "127.0.0.1",
    "[::1]",
)


@pytest.mark.parametrize("host", REFUSED)
@pytest.mark.parametrize("step", ["verify-inference", "load"])
def test_low_item_a_frontend_outside_the_cluster_is_refused(tmp_path, step, host):
    mode = ("--mode", "gate") if step == "verify-inference" else ("--duration", "1")
    out = tmp_path / "out"
    done = faultflow("step", step, *mode, "--url", f"http://{host}:8000", "--outputs-dir", str(out))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--allow-external-frontend" in done.stderr and not out.exists()


@pytest.mark.parametrize("host", ACCEPTED)
def test_low_item_in_cluster_hosts_are_accepted(host):
    assert in_cluster_host(host.strip("[]"))


def test_low_item_allow_external_frontend_lets_the_url_through(tmp_path):
    # 0.0.0.0 is refused without the flag; connecting to it stays on this machine (Linux: loopback), and
    # port 9 answers nothing: the gate runs and fails (exit 1), it is not refused (exit 2).
    done = faultflow(
        "step", "verify-inference", "--mode", "gate", "--url", "http://0.0.0.0:9", "--allow-external-frontend",
        "--requests", "1", "--timeout", "1", "--outputs-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
