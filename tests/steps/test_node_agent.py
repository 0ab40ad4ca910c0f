"""Issue 15 item 9: the node-agent image (images/node-agent) holds exactly what the node-side commands
import, and they run from those files alone.

* the Dockerfile's COPY lines name exactly the `steps` modules the entry point (steps.node_agent) and
  its commands import, as the import graph says (grimp, import-linter's reader), plus their packages'
  `__init__` and the XID catalogue's data: a new import makes this fail until the image copies it, and
  a file copied but not needed fails too;
* its click pin is pyproject.toml's, its python3 the lab's Debian base's, its user the steps image's
  (the toggle's owner);
* the node agent offers the commands every node stage and the toggle-off pod run, with their spelling;
* from a folder holding only the copied files and click, under an interpreter without site-packages
  (no Kubernetes client, matplotlib, numpy or httpx on its path), inject-xid writes the line and the
  toggle, and `shim off` switches it off.

The image itself: tests/lab/test_images.py (its files), tests/lab/test_real_cluster_images.py (real
nodes) and tests/lab/test_real_argo.py (the rendered step under the real Argo controller).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib.util import find_spec
from pathlib import Path

import click
import grimp

from lab.images import build, product
from lab.images.dockerfile import final_stage
from steps import node_agent
from steps.gpu import kmsg, nvsentinel, toggle
from steps.gpu.toggle_pod import TOGGLE_UID, toggle_off_pod
from tests.steps.test_gpus import make_proc
from workflows.render import scenario_template
from workflows.roles import NODE_AGENT
from workflows.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "node-agent" / "Dockerfile"
# Where the image puts the `steps` package (its PYTHONPATH).
SITE = "/opt/faultflow"
# What no module of the node agent may load (the steps image's heavy dependencies).
HEAVY = ("kubernetes", "httpx", "matplotlib", "numpy", "yaml", "urllib3")


def _entry_modules() -> set[str]:
    """steps.node_agent and the modules of the commands it offers (named as "module:attribute" strings)."""
    commands = {target.partition(":")[0] for target in (*node_agent.NODE_COMMANDS.values(), *node_agent.NODE_STEPS.values())}
    return {node_agent.__name__, *commands}


def _needed_files() -> set[str]:
    """The node agent's import closure in `steps`, as source paths, with their packages' __init__ and
    the package data they read."""
    graph = grimp.build_graph("steps")
    modules = set(_entry_modules())
    for module in list(modules):
        modules |= graph.find_upstream_modules(module)
    files = set()
    for module in modules:
        parts = module.split(".")
        files |= {"/".join(parts[:i]) + "/__init__.py" for i in range(1, len(parts))}
        path = "/".join(parts)
        files.add(f"{path}/__init__.py" if (ROOT / path / "__init__.py").exists() else f"{path}.py")
    # The XID catalogue (steps.gpu.xids) reads its data with importlib.resources.
    files |= {str(p.relative_to(ROOT)) for p in (ROOT / "steps" / "gpu" / "data").glob("*.json")}
    return files


def _copied_steps_files() -> dict[str, str]:
    """source -> the path it lands at in the image, for the Dockerfile's build-context COPY lines of steps/."""
    copied = {}
    for item in final_stage(DOCKERFILE).copies:
        for source in item.sources:
            if not item.stage and source.startswith("steps/"):
                assert item.destination.endswith("/"), item
                copied[source] = item.destination + Path(source).name
    return copied


def test_the_image_copies_exactly_the_modules_the_node_agent_imports():
    copied = _copied_steps_files()
    assert set(copied) == _needed_files()
    # Each lands at its package path under the image's PYTHONPATH.
    assert all(target == f"{SITE}/{source}" for source, target in copied.items()), copied
    assert ("PYTHONPATH", SITE) in final_stage(DOCKERFILE).env


def test_the_click_pin_is_pyprojects_and_the_user_is_the_toggle_owner():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    target, requirement = product.node_agent_pins()
    assert requirement in pins and requirement.startswith("click==")
    stage = final_stage(DOCKERFILE)
    assert stage.user == final_stage(product.STEPS_DOCKERFILE).user == str(TOGGLE_UID)
    assert stage.entrypoint == ("faultflow",)
    assert any(c.stage == "build" and c.sources == (f"{target}/click",) for c in stage.copies)
    # Its python3 is the one the lab's Debian base (which the lab builds it on) pins.
    python3 = next(p for p in build.DEBIAN_PACKAGES if p.startswith("python3="))
    assert f"install -y --no-install-recommends {python3} " in " ".join(DOCKERFILE.read_text().split())


def _resolves(argv: list[str]) -> bool:
    """Whether the node agent's `faultflow` has the command `argv` starts with (its subcommand path)."""
    group: click.Command = node_agent.main
    for word in argv:
        if not isinstance(group, click.Group):
            return True
        with click.Context(group) as ctx:
            found = group.get_command(ctx, word)
        if found is None:
            return False
        group = found
    return not isinstance(group, click.Group)


def test_the_node_agent_offers_what_every_node_pod_runs():
    """Every node-agent stage of every scenario (its rendered command) and the toggle-off pod."""
    node_stages = [(s.name, list(s.command)) for sc in SCENARIOS for s in (*sc.stages, *sc.exit_stages) if s.role is NODE_AGENT]
    assert {name for name, _ in node_stages} == {"inject-xid", "toggle-on"}
    for sc in SCENARIOS:
        for template in scenario_template(sc).to_dict()["spec"]["templates"]:
            if template.get("container", {}).get("securityContext", {}).get("privileged"):
                assert template["container"]["image"].startswith("faultflow-node-agent:"), (sc.name, template["name"])
    toggle_off = toggle_off_pod("r", "faultflow", "n", "/var/lib/faultflow", "x")["spec"]["containers"][0]["command"]
    for command in [argv for _, argv in node_stages] + [toggle_off]:
        assert command[0] == "faultflow" and _resolves(command[1:]), command
    # Nothing else: the janitor's or preflight's command is not there.
    assert not _resolves(["step", "janitor"]) and not _resolves(["step", "preflight"]) and not _resolves(["faults", "list"])


def _image_tree(folder: Path) -> Path:
    """The image's /opt/faultflow, from the Dockerfile's COPY lines, plus the venv's click (the pinned one)."""
    for source, target in _copied_steps_files().items():
        destination = folder / target.removeprefix(SITE + "/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, destination)
    shutil.copytree(Path(find_spec("click").origin).parent, folder / "click", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _agent(tree: Path, *args: str) -> subprocess.CompletedProcess:
    """The image's entry script under `python -S` (no site-packages: only the standard library and
    `tree`), refusing the heavy modules outright should anything try them."""
    guard = (
        "import sys\n"
        "class Refuse:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] in {HEAVY!r}: raise ImportError('node agent imported ' + name)\n"
        "sys.meta_path.insert(0, Refuse())\n"
        f"sys.argv = ['faultflow', *{list(args)!r}]\n"
        f"exec(compile(open({str(ROOT / 'images' / 'node-agent' / 'faultflow')!r}).read(), 'faultflow', 'exec'))\n"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-S", "-c", guard], capture_output=True, text=True, env=env, timeout=60)


def test_the_copied_files_alone_inject_the_xid_and_switch_the_toggle(tmp_path):
    tree = _image_tree(tmp_path / "opt")
    probe = _agent(tree, "--help")
    assert probe.returncode == 0, probe.stderr
    assert [line.split()[0] for line in probe.stdout.split("Commands:")[1].strip().splitlines()] == ["shim", "step"]
    proc = make_proc(tmp_path / "proc", [("0000:17:00.0", 0)])
    sink = tmp_path / "kmsg"
    sink.write_bytes(b"")
    tdir = tmp_path / "toggle"
    tdir.mkdir()
    injected = _agent(tree, "step", "inject-xid", "--xid", "48", "--kmsg-path", str(sink), "--proc-root", str(proc),
                      "--toggle-dir", str(tdir), "--gpu-metadata", str(tmp_path / "none.json"), "--outputs-dir", str(tmp_path / "out"))  # fmt: skip
    assert injected.returncode == 0, injected.stderr
    assert {json.loads(line)["kind"] for line in injected.stdout.splitlines()} == {"cuda", "xid"}
    found = nvsentinel.match_xid(kmsg.journald_message(sink.read_bytes())[1])
    assert (found.pci, found.xid) == ("0000:17:00", 48)
    assert toggle.read(tdir / "toggle").on and (tmp_path / "out" / "expected-action").read_text()
    off = _agent(tree, "shim", "off", "--file", str(tdir / "toggle"))
    assert off.returncode == 0, off.stderr
    assert toggle.read(tdir / "toggle").on is False
    # A command the node agent does not have is a usage error (exit 2), not a missing module.
    refused = _agent(tree, "step", "janitor")
    assert refused.returncode == 2 and "No such command 'janitor'" in refused.stderr, refused.stderr
