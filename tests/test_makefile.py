"""`make help` lists every target of the Makefile, each with its one `## ` description."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULE = re.compile(r"^([a-z][a-z-]*):(?!=)(.*)$")


def rules() -> dict[str, str]:
    """target → the rest of its rule line (prerequisites and the `## ` comment)."""
    return {m.group(1): m.group(2) for line in (ROOT / "Makefile").read_text().splitlines() if (m := RULE.match(line))}


def test_every_target_has_one_description() -> None:
    found = rules()
    assert {"help", "lint", "test", "venv"} <= set(found)
    assert [t for t, rest in found.items() if rest.count("## ") != 1] == []


def test_make_help_lists_every_target() -> None:
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert listed == set(rules())


def test_make_test_lints_first() -> None:
    prerequisites = rules()["test"].split("##")[0].split()
    assert prerequisites[0] == "lint"
