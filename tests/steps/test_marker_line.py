"""Which shim start-up lines count as "the shim is loaded and bound to this toggle file"."""

from __future__ import annotations

import pytest

from steps.workload.rollout import marker_seen

TOGGLE = "/var/lib/faultflow/toggle"
LINE = "faultflow-shim: loaded version=0.1.0 pid=7 enabled=0 xid=79 gpu=all toggle={} (mapped)"


@pytest.mark.parametrize("path", [TOGGLE, "/lab/.lab/nodes/gpu-0/var/lib/faultflow/toggle"])
def test_the_toggle_at_its_mount_path_or_under_a_node_root_counts(path: str) -> None:
    assert marker_seen(f"other output\n{LINE.format(path)}\nmore", TOGGLE)


@pytest.mark.parametrize(
    "text",
    [
        LINE.format("/var/lib/faultflow/toggle2"),  # another file
        LINE.format("/lab/nodes/gpu-0/var/lib/faultflowtoggle"),  # not a path suffix
        LINE.format(TOGGLE).replace(" (mapped)", " (unmapped)"),  # the toggle could not be mapped
        "faultflow-shim: disabled toggle=/var/lib/faultflow/toggle (mapped)",
        "",
    ],
)
def test_anything_else_does_not(text: str) -> None:
    assert not marker_seen(text, TOGGLE)
