"""The layer rules (pyproject.toml [tool.importlinter]) hold, and each contract catches what it is for.

Each case copies the packages to a temporary directory, plants one forbidden import in the copy and runs
the real `lint-imports` on it: the contract named must break. The unmodified copy keeps every contract,
so a contract that breaks here broke because of the plant. bench/ is no package, so its rule (import
only tests.support from the tests) is read from its source.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("steps", "workflows", "lab")


def contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The packages and pyproject.toml, copied (no byte-code: grimp reads the source)."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # The copy comes first on the path: the editable install's finder is consulted only after it.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()", "--no-cache", "--no-logo"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def broken(result: subprocess.CompletedProcess) -> set[str]:
    """Ids of the contracts the report calls BROKEN."""
    names = {c["name"]: cid for cid, c in contracts().items()}
    # The summary wraps long names over lines and pads them to a width: compare without whitespace.
    text = "".join(result.stdout.split())
    return {cid for name, cid in names.items() if "".join(name.split()) + "BROKEN" in text}


def plant(tree: Path, module: str, line: str) -> None:
    path = tree / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = tree / module.replace(".", "/") / "__init__.py"
    with path.open("a") as file:
        file.write(f"\n{line}\n")


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts())} kept, 0 broken." in result.stdout


PLANTS = [
    # domain packages: no click, no command layer, no options (which imports click)
    ("steps.gpu.xids", "import click", {"domain-no-click"}),
    ("steps.inference.client", "from click import echo", {"domain-no-click"}),
    ("steps.report.stats", "from steps import options", {"domain-no-click"}),
    ("steps.kube.client", "from steps.cli import run", {"domain-no-click"}),
    ("steps.network.verify", "from steps.commands._network import create_all", {"domain-no-click", "steps-layers"}),
    # steps ships alone: no workflows, lab or hera, at any depth
    ("steps.events", "import lab", {"steps-self-contained"}),
    ("steps.commands.report", "from workflows import declaration", {"steps-self-contained"}),
    ("steps.cli", "import hera.workflows", {"steps-self-contained"}),
    # workflows names only the XID catalogue and the event names from steps
    ("workflows.render", "from steps.kube.client import Ref", {"workflows-narrow"}),
    ("workflows.scenarios", "from steps.events import emit", {"workflows-narrow"}),
    ("workflows.deploy", "from steps.errors import BadInput", {"workflows-narrow"}),
    ("workflows.deploy", "import lab.kube", {"workflows-below-lab"}),
    # layers: kube below workload and run; independent siblings; the shared root modules at the bottom
    ("steps.kube.client", "from steps.workload import dynamo", {"steps-layers"}),
    ("steps.kube.jsonpatch", "from steps.run import ledger", {"steps-layers"}),
    # (the toggle is the node agent's too: it may not reach the inference client either)
    ("steps.gpu.toggle", "from steps.inference import records", {"steps-layers", "node-agent-narrow"}),
    ("steps.network.selectors", "from steps.report import stats", {"steps-layers"}),
    ("steps.errors", "from steps.gpu import xids", {"steps-layers"}),
    # guard (issue 18): above report and inference, below the commands, no click
    ("steps.guard.halt", "import click", {"domain-no-click"}),
    ("steps.report.journal", "from steps.guard import conditions", {"steps-layers"}),
    ("steps.guard.watcher", "from steps.commands import watch_abort", {"domain-no-click", "steps-layers"}),
    # the node agent (images/node-agent): no cluster client, directly or through the steps that use it
    ("steps.gpu.kmsg", "import kubernetes", {"node-agent-narrow"}),
    ("steps.commands.shim", "from steps.options import RunId", {"node-agent-narrow"}),
    ("steps.option_types", "from steps.run.context import RunContext", {"node-agent-narrow"}),
    ("steps.commands.inject_xid", "import matplotlib.pyplot", {"node-agent-narrow"}),
]


@pytest.mark.parametrize("module,line,expected", PLANTS, ids=[f"{m}:{line}" for m, line, _ in PLANTS])
def test_a_planted_import_breaks_its_contract(tree: Path, module: str, line: str, expected: set[str]) -> None:
    plant(tree, module, line)
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken(result) == expected, result.stdout


def test_a_new_steps_package_must_be_placed_in_the_layers(tree: Path) -> None:
    (tree / "steps" / "telemetry").mkdir()
    (tree / "steps" / "telemetry" / "__init__.py").write_text('"""Unplaced."""\n')
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken(result) == {"steps-layers"}, result.stdout


ALLOWED = [
    ("workflows.deploy", "from steps.gpu.xids import catalogue"),
    ("workflows.deploy", "from steps.event_names import FAULT_INJECTED"),
    ("lab.kube", "from workflows import declaration"),
    ("steps.commands.load", "from steps.options import RunId"),
    ("steps.options", "import click"),
    ("steps.run.revert", "from steps.workload import kinds"),
]


@pytest.mark.parametrize("module,line", ALLOWED, ids=[f"{m}:{line}" for m, line in ALLOWED])
def test_an_allowed_import_keeps_every_contract(tree: Path, module: str, line: str) -> None:
    plant(tree, module, line)
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_click_contract_covers_every_domain_package() -> None:
    """Only steps.commands and the steps root may import click: every other sub-package of steps is a
    source of the contract (the exhaustive layers contract makes a new package name itself)."""
    packages = {p.name for p in (ROOT / "steps").iterdir() if (p / "__init__.py").exists()}
    sources = set(contracts()["domain-no-click"]["source_modules"])
    assert sources == {f"steps.{name}" for name in packages - {"commands"}}


def test_bench_imports_only_the_shared_test_support() -> None:
    offending = []
    for script in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text(), str(script))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offending += [f"{script.name}: {n}" for n in names if n.split(".")[0] == "tests" and not n.startswith("tests.support")]
    assert offending == []
