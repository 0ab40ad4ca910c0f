"""`render_s`: wall time to render every scenario's WorkflowTemplate, both CronWorkflows and the RBAC
(everything `faultflow render` writes), median of several runs after one warm-up (imports excluded)."""

from __future__ import annotations

import statistics
import time

from workflows.cli import render_files

ROUNDS = 7


def main() -> None:
    files = render_files()  # warm-up: first-use caches (pydantic models, the XID catalogue)
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        render_files()
        times.append(time.perf_counter() - start)
    print(f"render_s: {statistics.median(times):.4f}")
    print(f"render_files: {len(files)}")


if __name__ == "__main__":
    main()
