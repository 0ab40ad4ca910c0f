"""Argo's own validation of manifests: the real `argo lint --offline`, built from source (lab.tools).

Offline, the CLI resolves `workflowTemplateRef`s from the files it is given, so lint the whole set
at once (e.g. all of deploy/): a CronWorkflow whose WorkflowTemplate is not among the paths fails.
References are looked up in the referring object's namespace, as written in the files. Objects of
other kinds (RBAC, kustomization.yaml) are skipped; a set with no Argo object at all fails.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import tools

# The Argo lines we render for, as `ClusterSpec(argo=...)` names them: "v3.7" (3.6+) and "v4.0".
ARGO_VERSIONS = tuple(tools.ARGO_CLIS)


@dataclass(frozen=True)
class LintResult:
    ok: bool
    # Everything the CLI printed; with `--output simple`, one `PATH: in "NAME" (KIND): problem` line
    # per problem, or "no linting errors found!".
    output: str


def lint_offline(paths: Sequence[str | Path], argo_version: str = "v4.0", timeout: float = 300) -> LintResult:
    """Lint files and directories of manifests with the `argo` CLI of one Argo line, offline."""
    if argo_version not in tools.ARGO_CLIS:
        raise ValueError(f"argo_version must be one of {ARGO_VERSIONS}, not {argo_version!r}")
    if not paths:
        raise ValueError("lint_offline needs at least one path")
    binary = tools.ensure_built(tools.ARGO_CLIS[argo_version])
    cmd = [str(binary), "lint", "--offline", "--output", "simple", "--no-color", *map(str, paths)]
    proc = subprocess.run(cmd, env=_offline_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode not in (0, 1):  # 1 is "problems found"; anything else is the CLI failing
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return LintResult(ok=proc.returncode == 0, output=(proc.stdout + proc.stderr).strip())


def _offline_env() -> dict[str, str]:
    # The user's Argo server, namespace or kubeconfig must not change what an offline lint says.
    return {k: v for k, v in os.environ.items() if not k.startswith(("ARGO_", "KUBECONFIG"))}
