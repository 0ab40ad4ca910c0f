"""Bad input for verify-inference, load and report: one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import pytest

from steps.cli import run

URL = "http://127.0.0.1:9"  # never contacted: validation fails first

VERIFY = ["step", "verify-inference", "--url", URL]
LOAD = ["step", "load", "--url", URL]

BAD = [
    (VERIFY, []),  # --mode missing
    (VERIFY, ["--mode", "probe"]),
    (VERIFY, ["--mode", "gate", "--threshold", "0"]),
    (VERIFY, ["--mode", "gate", "--threshold", "1.5"]),
    (VERIFY, ["--mode", "gate", "--threshold", "nan"]),
    (VERIFY, ["--mode", "gate", "--requests", "0"]),
    (VERIFY, ["--mode", "gate", "--deadline", "10"]),
    (VERIFY, ["--mode", "gate", "--window", "5"]),
    (VERIFY, ["--mode", "recover", "--requests", "5"]),
    (VERIFY, ["--mode", "recover", "--deadline", "-1"]),
    (VERIFY, ["--mode", "recover", "--deadline", "inf"]),
    (VERIFY, ["--mode", "recover", "--window", "0"]),
    (VERIFY, ["--mode", "gate", "--rate", "0"]),
    (VERIFY, ["--mode", "gate", "--rate", "fast"]),
    (VERIFY, ["--mode", "gate", "--concurrency", "0"]),
    (VERIFY, ["--mode", "gate", "--timeout", "0"]),
    (VERIFY, ["--mode", "gate", "--max-tokens", "0"]),
    (VERIFY, ["--mode", "gate", "--api", "embeddings"]),
    (VERIFY, ["--mode", "gate", "--model", " "]),
    (VERIFY, ["--mode", "gate", "--prompt", ""]),
    (VERIFY, ["--mode", "gate", "--phase", "bad phase!"]),
    (["step", "verify-inference", "--mode", "gate", "--url", "ftp://frontend:8000"], []),
    (["step", "verify-inference", "--mode", "gate", "--url", "frontend:8000"], []),
    (["step", "verify-inference", "--mode", "gate", "--url", "http://frontend:8000/v1/chat/completions"], []),
    (["step", "verify-inference", "--mode", "gate", "--url", "http://frontend:99999"], []),
    (["step", "verify-inference", "--mode", "gate", "--url", "http://frontend:8000/?x=1"], []),
    (["step", "verify-inference", "--mode", "gate"], []),  # --url missing
    (LOAD, ["--duration", "0"]),
    (LOAD, ["--grace", "-1"]),
    (LOAD, ["--stop-file", "/nonexistent-dir/stop"]),
    (LOAD, ["--rate", "20000"]),
    (LOAD, ["--unknown-option"]),
    (["step", "report"], []),  # --input missing
    (["step", "report", "--input", "/nonexistent/events.jsonl"], []),
    (["step", "report", "--input", "."], ["--threshold", "2"]),
    (["step", "report", "--input", "."], ["--window", "0"]),
    (["step", "report", "--input", "."], ["--scenario", "a b"]),
    (["step", "report", "--input", "."], ["--max-recovery-seconds", "nan"]),
    (["step", "report", "--input", "."], ["--min-availability", "-0.1"]),
    (["step", "report", "--input", "."], ["--run-id", "Bad_ID"]),
    (["step", "report", "--input", "."], ["--outputs-dir", "elsewhere"]),  # with --outputs: one option, given twice
]


@pytest.mark.parametrize("base, extra", BAD, ids=[" ".join(b[1:2] + e) or "-" for b, e in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(base, extra, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text("")
    argv = [a if a != "." else str(tmp_path / "in.jsonl") for a in base + extra]
    with pytest.raises(SystemExit) as exit_:
        run([*argv, "--outputs", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("faultflow: error: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_outputs_that_is_a_file_is_bad_input(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for argv in (VERIFY + ["--mode", "gate"], LOAD, ["step", "report", "--input", str(tmp_path / "file")]):
        with pytest.raises(SystemExit) as exit_:
            run([*argv, "--outputs", str(tmp_path / "file")])
        assert exit_.value.code == 2
    assert (tmp_path / "file").read_text() == "x"


def test_existing_stop_file_is_refused(tmp_path, capsys):
    (tmp_path / "stop").touch()
    with pytest.raises(SystemExit) as exit_:
        run([*LOAD, "--stop-file", str(tmp_path / "stop"), "--outputs", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "already exists" in capsys.readouterr().err


def test_report_with_no_line_files_is_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_:
        run(["step", "report", "--input", str(tmp_path / "empty"), "--outputs", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "no event or record files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
