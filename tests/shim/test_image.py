"""The shim image's init-container command installs the library and creates the toggle switched off."""

from __future__ import annotations

import subprocess
from pathlib import Path

from steps.gpu import toggle

INSTALL = Path(__file__).resolve().parents[2] / "images" / "shim" / "install.sh"


def install(native, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(INSTALL), *map(str, args)],
        env={"FAULTFLOW_SHIM_SOURCE": str(native.shim), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_install_copies_the_shim_and_creates_an_off_toggle(native, tmp_path):
    lib, node = tmp_path / "lib", tmp_path / "node"
    lib.mkdir(), node.mkdir()
    done = install(native, lib, node / "toggle")
    assert done.returncode == 0, done.stderr
    assert (lib / "libfaultflow_cuda.so").read_bytes() == native.shim.read_bytes()
    assert (lib / "libfaultflow_nvml.so").read_bytes() == native.nvml_shim.read_bytes()  # for NVML consumers
    reference = tmp_path / "reference"
    toggle.write(reference, toggle.Toggle(on=False))
    assert (node / "toggle").read_bytes() == reference.read_bytes()  # the exact record the CLI writes


def test_install_leaves_an_existing_toggle_alone(native, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    existing = tmp_path / "toggle"
    toggle.write(existing, toggle.Toggle(on=True, xid=79))
    before = existing.read_bytes()
    assert install(native, lib, existing).returncode == 0
    assert existing.read_bytes() == before  # a fault already switched on stays on


def test_install_without_arguments_fails(native):
    done = install(native)
    assert done.returncode != 0 and "usage" in done.stderr


def test_install_fills_an_empty_toggle_in_place(native, tmp_path):
    """Issue 15 item 10 (create without clobbering): never by rename, so a process that already maps
    the file keeps seeing it."""
    lib = tmp_path / "lib"
    lib.mkdir()
    empty = tmp_path / "toggle"
    empty.write_bytes(b"")
    inode = empty.stat().st_ino
    assert install(native, lib, empty).returncode == 0
    assert empty.stat().st_ino == inode and not toggle.read(empty).on and empty.stat().st_size == toggle.TOGGLE_SIZE


def test_install_hands_the_toggle_to_the_owner_given_and_keeps_it_0644(native, tmp_path):
    """The toggle-off pod runs as the steps image's user: it must own the file (it writes in place);
    nobody else may write it, everyone may read it (workers of any uid map it)."""
    lib, node = tmp_path / "lib", tmp_path / "node"
    lib.mkdir(), node.mkdir()
    assert install(native, lib, node / "toggle", "10001:10001").returncode == 0
    made = (node / "toggle").stat()
    assert (made.st_uid, made.st_gid, made.st_mode & 0o777) == (10001, 10001, 0o644)
    assert [p.name for p in node.iterdir()] == ["toggle"]  # no temporary file left


def test_install_hands_an_existing_root_owned_toggle_over_in_place(native, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    existing = tmp_path / "toggle"
    toggle.write(existing, toggle.Toggle(on=True, xid=79))
    before, inode = existing.read_bytes(), existing.stat().st_ino
    assert install(native, lib, existing, "10001:10001").returncode == 0
    assert existing.read_bytes() == before and existing.stat().st_ino == inode  # the same file, still on
    assert existing.stat().st_uid == 10001


def test_install_fails_when_it_cannot_create_the_toggle(native, tmp_path):
    """A toggle that could not be made must fail the init container: the worker would start with
    nothing to map, and no fault could ever reach it (an `a && b` list hid the failure from `set -e`)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    done = install(native, lib, tmp_path / "missing" / "toggle", "10001:10001")
    assert done.returncode != 0
    assert "created" not in done.stdout
