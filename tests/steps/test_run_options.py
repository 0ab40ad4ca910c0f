"""`@run_options`: the command's own checks come before the cluster's credentials are needed, and
`--outputs-dir` / `--outputs` (its old spelling, hidden) are one option."""

from __future__ import annotations

import pytest

from steps.cli import run

RUN = ["--run-id", "r1", "--namespace", "ns"]
# Each fails a check of the command itself: exit 2 even though no credentials can be loaded.
OWN_CHECKS = [
    ["step", "inject-cuda-shim", *RUN, "--target", "dgd/llm", "--shim-image", " ", "--xid", "79"],
    ["step", "verify-partition", *RUN, "--probe-image", " "],
    ["step", "degrade-network", *RUN, "--target", "dgd/llm"],
    ["step", "partition-network", *RUN, "--target", "dgd/llm", "--partition", "frontend-worker", "--include-etcd"],
    ["step", "preflight", *RUN, "--target", "dgd/llm", "--fault", "network", "--xid", "79"],
    ["step", "preflight", *RUN, "--target", "dgd/llm", "--xid", "79", "--toggle-dir", "var/lib"],
    ["step", "cleanup-dgd", *RUN, "--outputs-dir", "a", "--outputs", "b"],
    ["step", "heal-network", "--run-id", "Bad_ID", "--namespace", "ns"],
]


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv", OWN_CHECKS, ids=lambda a: " ".join(a[1:2] + a[-2:]))
def test_own_checks_come_before_credentials(argv, no_credentials, capsys):
    with pytest.raises(SystemExit) as exit_:
        run(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("faultflow: error: ") and err.count("\n") == 1, err
    assert "credentials" not in err
    assert sorted(p.name for p in no_credentials.iterdir()) == []


@pytest.mark.parametrize("spelling", ["--outputs-dir", "--outputs"])
def test_both_spellings_reach_the_outputs_check_then_the_cluster(spelling, no_credentials, capsys):
    (no_credentials / "file").write_text("x")
    with pytest.raises(SystemExit) as exit_:
        run(["step", "cleanup-dgd", *RUN, spelling, str(no_credentials / "file")])
    assert exit_.value.code == 2 and "outputs directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        run(["step", "cleanup-dgd", *RUN, spelling, str(no_credentials / "deep" / "out")])
    assert exit_.value.code == 3 and "cannot load cluster credentials" in capsys.readouterr().err


def test_the_old_spelling_is_hidden(capsys):
    with pytest.raises(SystemExit):
        run(["step", "load", "--help"])
    shown = capsys.readouterr().out
    assert "--outputs-dir" in shown and "--outputs " not in shown


def test_a_step_that_always_writes_refuses_an_empty_outputs_dir(no_credentials, capsys):
    (no_credentials / "in.jsonl").write_text("")
    with pytest.raises(SystemExit) as exit_:
        run(["step", "report", "--input", str(no_credentials / "in.jsonl"), "--outputs-dir", ""])
    assert exit_.value.code == 2 and "--outputs-dir must name a directory" in capsys.readouterr().err
