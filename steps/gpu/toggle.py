"""The node-level fault toggle file the shim maps into every shimmed process.

Format: exactly `TOGGLE_SIZE` bytes of text, so `cat` shows it and the shim can map it whole:

    1 xid=79 expires_ms=1764000000000 gpu=-1 v=2 at=1764000000000 mode=error after=0 prob=1 seed=0 hang_ms=0 bus=- <spaces> \\n

Versions: version 1 was 64 bytes with `xid`, `expires_ms` and `gpu` only. Version 2 (`v=2`) is 256
bytes and starts with version 1's three fields in the same form, so a version-1 shim still reads
those (and treats every record as error mode, every call). Its additions:
`at` the switch-on time in ms, which names the injection (NVML events are delivered once per
injection; trigger counts restart with it); `mode` error|hang; `after` the number of targeted calls
that pass before the fault trips; `prob` the chance each targeted call fails after that, drawn from a
sequence fixed by `seed`; `hang_ms` how long a hung call blocks before it fails (0: until the toggle
clears); `bus` the PCI bus id of the targeted GPU for NVML (`-`: by index, `gpu`). A version-1 file
is read as version 1 and rewritten as version 2 (extended in place, never truncated).

Byte 0 is the switch ('1' on, anything else off) and the only byte the shim reads on the per-call
path. The shim maps the file MAP_SHARED, so the file is rewritten in place (never replaced by rename,
never truncated — a truncated mapped file would SIGBUS its readers), in an order that keeps every
reader consistent: switching on writes the body first and byte 0 last; switching off writes byte 0
first. `expires_ms` is a Unix time in milliseconds (0: never) after which the shim treats the fault as
off by itself, so a forgotten fault cannot outlive its scenario.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

TOGGLE_SIZE = 256
VERSION = 2
V1_SIZE = 64
ALL_GPUS = -1
# Where the toggle lives on a node (the hostPath the shim's init container creates it in and the
# workers map read-only), and its name inside that directory. The workflows' node stages spell the
# same path (workflows may not import steps; tests/workflows/test_step_contract.py holds them equal).
DEFAULT_DIR = "/var/lib/faultflow"
FILE_NAME = "toggle"


def file_in(directory: str) -> str:
    """The toggle file's path in a toggle directory (a node path or a mount point)."""
    return f"{directory.rstrip('/')}/{FILE_NAME}"


MODES = ("error", "hang")


@dataclass(frozen=True)
class Toggle:
    on: bool
    xid: int = 0
    expires_ms: int = 0
    gpu: int = ALL_GPUS
    at_ms: int = 0
    mode: str = "error"
    after_calls: int = 0
    probability: float = 1.0
    seed: int = 0
    hang_ms: int = 0
    bus: str = ""
    version: int = VERSION

    def body(self) -> bytes:
        """Bytes 1..TOGGLE_SIZE-1 of the file: the fields after the switch byte, space padded.
        Always version 2; version 1's fields come first (see the module docstring)."""
        text = (
            f" xid={self.xid} expires_ms={self.expires_ms} gpu={self.gpu} v={VERSION} at={self.at_ms}"
            f" mode={self.mode} after={self.after_calls} prob={_probability_text(self.probability)}"
            f" seed={self.seed} hang_ms={self.hang_ms} bus={self.bus or '-'}"
        )
        raw = text.encode("ascii")
        if len(raw) > TOGGLE_SIZE - 2:
            raise ValueError("toggle fields do not fit the record")
        return raw.ljust(TOGGLE_SIZE - 2) + b"\n"

    def expired(self, now_ms: int | None = None) -> bool:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return self.expires_ms != 0 and now >= self.expires_ms

    def active(self, now_ms: int | None = None) -> bool:
        return self.on and not self.expired(now_ms)


def _probability_text(probability: float) -> str:
    """Six decimals at most: the shim reads parts per million, without the locale's decimal point."""
    if probability >= 1:
        return "1"
    return f"{probability:.6f}".rstrip("0").rstrip(".") or "0"


def parse(raw: bytes) -> Toggle:
    """Reads a toggle record (version 1 or 2); fields that are missing or malformed read as off/0."""
    if not raw:
        return Toggle(on=False)
    fields = {}
    for token in raw[1:].decode("ascii", errors="replace").split():
        key, _, value = token.partition("=")
        fields[key] = value

    def number(key: str, default: int) -> int:
        try:
            return int(fields.get(key, default))
        except ValueError:
            return default

    try:
        probability = min(max(float(fields.get("prob", 1.0)), 0.0), 1.0)
    except ValueError:
        probability = 1.0
    bus = fields.get("bus", "-")
    return Toggle(
        on=raw[:1] == b"1",
        xid=number("xid", 0),
        expires_ms=number("expires_ms", 0),
        gpu=number("gpu", ALL_GPUS),
        at_ms=number("at", 0),
        mode=fields.get("mode", "error") if fields.get("mode") in MODES else "error",
        after_calls=number("after", 0),
        probability=probability,
        seed=number("seed", 0),
        hang_ms=number("hang_ms", 0),
        bus="" if bus == "-" else bus,
        version=number("v", 1),
    )


def read(path: Path) -> Toggle:
    with open(path, "rb") as handle:
        return parse(handle.read(TOGGLE_SIZE))


def write(path: Path, toggle: Toggle) -> None:
    """Rewrites the record in place in the order that keeps mapped readers consistent.
    A record switched on without `at_ms` gets the current time: every switch-on is a new injection."""
    if toggle.on and not toggle.at_ms:
        toggle = replace(toggle, at_ms=int(time.time() * 1000))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size < TOGGLE_SIZE:
            # A new, version-1 or foreign short file: give it its full size while it reads as off
            # (switched off first, so no reader sees a half-written body).
            os.pwrite(fd, b"0", 0)
            os.pwrite(fd, b"0" + Toggle(on=False).body(), 0)
        if toggle.on:
            os.pwrite(fd, toggle.body(), 1)
            os.pwrite(fd, b"1", 0)
        else:
            os.pwrite(fd, b"0", 0)
            os.pwrite(fd, toggle.body(), 1)
        os.fsync(fd)
    finally:
        os.close(fd)
