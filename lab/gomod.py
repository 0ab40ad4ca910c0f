"""Go module plumbing: fetch a module at a pinned version, build a binary from it.

Modules like k8s.io/kubernetes and go.etcd.io/etcd/server/v3 replace their sibling modules with local
paths in their go.mod, so `go install module@version` refuses them. We build them from a generated
wrapper module that requires the pinned module and replaces each of those siblings with its
published version instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Kubernetes 1.37's go.mod asks for Go 1.25; older toolchains fail late with confusing errors.
MIN_GO = (1, 25)


class GoMissing(RuntimeError):
    """No usable Go toolchain: the message is one line saying what to install."""


@dataclass(frozen=True)
class Module:
    path: str
    version: str
    dir: Path
    go_mod: Path


def go_binary() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoMissing(
            "faultflow: the Go toolchain (1.25 or newer) is needed to build the test control plane "
            "(kube-apiserver, etcd) from source: install Go and put `go` on PATH"
        )
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    if match and (int(match[1]), int(match[2])) < MIN_GO:
        raise GoMissing(
            f"faultflow: Go {out.strip()} is too old to build the test control plane; install Go {MIN_GO[0]}.{MIN_GO[1]} or newer"
        )
    return go


def _env(no_sum_check: tuple[str, ...] = ()) -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod")
    if no_sum_check:
        # Some pinned modules are not in the public checksum database; their hash is pinned by us
        # instead (see `verify_ziphash`).
        env["GONOSUMDB"] = ",".join(no_sum_check)
    return env


def download(path: str, version: str, *, no_sum_check: bool = False) -> Module:
    """`go mod download` one module version into the Go module cache and say where it is."""
    go = go_binary()
    with tempfile.TemporaryDirectory(prefix="faultflow-gomod-") as scratch:
        proc = subprocess.run(
            [go, "mod", "download", "-json", f"{path}@{version}"],
            cwd=scratch,  # outside any module, so no go.mod around us interferes
            capture_output=True,
            text=True,
            env=_env((path,) if no_sum_check else ()),
        )
    info = json.loads(proc.stdout) if proc.stdout.strip() else {}
    if proc.returncode != 0 or "Error" in info:
        raise RuntimeError(f"go mod download {path}@{version}: {info.get('Error') or proc.stderr.strip()}")
    return Module(path=path, version=version, dir=Path(info["Dir"]), go_mod=Path(info["GoMod"]))


def verify_ziphash(module: Module, expected: str) -> None:
    """Check the module's content hash (go.sum's `h1:`) against our pin."""
    ziphash = module.go_mod.with_suffix(".ziphash")
    actual = ziphash.read_text().strip()
    if actual != expected:
        raise RuntimeError(f"{module.path}@{module.version}: content hash {actual} != pinned {expected}")


_LOCAL_REPLACE = re.compile(r"^\s*(?:replace\s+)?(\S+)(?:\s+\S+)?\s+=>\s+(\.\.?/\S*)\s*$")


def local_replaces(go_mod: Path) -> list[str]:
    """Modules that `go_mod` replaces with a local directory (the siblings built from one repo)."""
    return [m[1] for line in go_mod.read_text().splitlines() if (m := _LOCAL_REPLACE.match(line))]


def wrapper_go_mod(module: Module, replace_version: str, extra: tuple[tuple[str, str], ...] = ()) -> str:
    replaces = [(name, f"{name} {replace_version}") for name in local_replaces(module.go_mod)]
    replaces += [(name, target) for name, target in extra]
    lines = [
        "module faultflow.local/envtest-build",
        "",
        "go 1.25",
        "",
        f"require {module.path} {module.version}",
        "",
        "replace (",
        *[f"\t{name} => {target}" for name, target in replaces],
        ")",
        "",
    ]
    return "\n".join(lines)


def build_binary(
    module: Module,
    package: str,
    output: Path,
    *,
    replace_version: str,
    extra_replaces: tuple[tuple[str, str], ...] = (),
    link_vars: tuple[tuple[str, str], ...] = (),
    unchecked: tuple[str, ...] = (),
    placeholders: tuple[str, ...] = (),
    symlinks: tuple[tuple[str, str], ...] = (),
    log: Path,
    label: str,
) -> None:
    """Build `package` from a wrapper module into `output`, printing progress while it runs.

    `placeholders`: files, relative to the module's root, the build needs but the module lacks; the
    module is then built from a copy that has them, empty (see `copy_with_placeholders`).
    `symlinks`: (link, target) files the upstream repository has as symlinks, which module zips drop;
    the copy gets each link as a copy of its target (relative to the link's folder).
    """
    go = go_binary()
    with tempfile.TemporaryDirectory(prefix="faultflow-gobuild-") as scratch:
        work = Path(scratch)
        if placeholders or symlinks:
            copy_with_placeholders(module, work / "src", placeholders, symlinks)
            extra_replaces = (*extra_replaces, (module.path, "./src"))
        (work / "go.mod").write_text(wrapper_go_mod(module, replace_version, extra_replaces))
        # A build-tagged import makes `go mod tidy` resolve exactly what the package needs.
        (work / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{package}"\n')
        env = _env(unchecked)
        with open(log, "w") as sink:
            _run_logged([go, "mod", "tidy"], work, env, sink, log)
            tmp_out = output.with_name(output.name + ".partial")
            ldflags = " ".join(["-s", "-w", *(f"-X {name}={value}" for name, value in link_vars)])
            cmd = [
                go, "build", "-v", "-p", "2", "-trimpath", f"-ldflags={ldflags}",
                "-o", str(tmp_out), package,
            ]  # fmt: skip
            _run_logged(cmd, work, env, sink, log, progress=label)
        tmp_out.replace(output)  # appear whole or not at all


def copy_with_placeholders(module: Module, dest: Path, placeholders: tuple[str, ...], symlinks: tuple[tuple[str, str], ...] = ()) -> None:
    """Copy the module's source to `dest` and add each placeholder file, empty, and each dropped
    symlink as a copy of its target.

    Some modules need files their release generates before compiling (Argo's UI bundle, which a
    `go:embed` requires). Go refuses changed files, and `-overlay` files, beneath the module cache, so
    such a module is built from a copy the wrapper replaces it with; its dependencies stay checked.
    """
    shutil.copytree(module.dir, dest, copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(dest):
        os.chmod(folder, 0o755)  # copytree keeps the module cache's read-only folder modes
    for rel in placeholders:
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    for link, target in symlinks:
        path = dest / link
        if path.exists():
            raise RuntimeError(f"{module.path}@{module.version}: {link} is in the module now; drop the symlink fix-up")
        shutil.copyfile(path.parent / target, path)


def _run_logged(cmd: list[str], cwd: Path, env: dict[str, str], sink, log: Path, progress: str | None = None) -> None:
    sink.write(f"$ {' '.join(cmd)}\n")
    sink.flush()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT)
    done = threading.Event()
    if progress:
        threading.Thread(target=_report, args=(progress, log, done, proc), daemon=True).start()
    try:
        rc = proc.wait()
    finally:
        done.set()
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        raise RuntimeError(f"`{' '.join(cmd[:2])}` failed (rc={rc}); log {log}:\n{tail}")


def _report(label: str, log: Path, done: threading.Event, proc: subprocess.Popen) -> None:
    start = time.monotonic()
    while not done.wait(30):
        packages = sum(1 for line in log.read_text().splitlines() if not line.startswith(("$", "go:")))
        print(
            f"  … {label}: {time.monotonic() - start:.0f}s, {packages} packages compiled (log: {log})",
            file=sys.stderr,
            flush=True,
        )
