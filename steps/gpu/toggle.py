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
never truncated), in an order that keeps every reader consistent: switching on writes the body first
and byte 0 last; switching off writes byte 0 first. The shim survives both mistakes (a SIGBUS handler
for truncation, an inode re-check for a rename; shim/control.c), but a process only follows a file
replaced by rename while its old mapping reads as on.

`expires_ms` is a Unix time in milliseconds after which the shim treats the fault as off by itself, so
a forgotten fault cannot outlive its scenario. An "on" record must expire within `MAX_DURATION_MS`
(24 h) of the reader's clock: 0 ("never", version 1), or a time further away, reads as off — the shim
applies the same rule. `gpu` is -1 (every device) or 0..`MAX_GPU`; anything else reads as off.

The writer never follows a symbolic link, creates a missing file exclusively (O_EXCL: never over a
file someone else just made), and refuses to overwrite a file that is not a toggle record.
"""

from __future__ import annotations

import errno
import math
import os
import re
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path

from steps.errors import BadInput

TOGGLE_SIZE = 256
VERSION = 2
V1_SIZE = 64
ALL_GPUS = -1
# The highest GPU id a record may name (the shim's FF_GPU_MAX): GPU ids of one node, never wrapped.
MAX_GPU = 63
# The longest a fault may stay on (the shim's FF_EXPIRY_MAX_MS), and how long it stays on by default.
MAX_DURATION_MS = 24 * 3600 * 1000
DEFAULT_DURATION_S = 30 * 60
MAX_COUNT = 10**9  # keeps every field of the record within its 256 bytes
BUS_ID = re.compile(r"(?:[0-9A-Fa-f]{4}|[0-9A-Fa-f]{8}):[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]")
# Where the toggle lives on a node (the hostPath the shim's init container creates it in and the
# workers map read-only), and its name inside that directory. The workflows' node stages spell the
# same path (workflows may not import steps; tests/workflows/test_step_contract.py holds them equal).
DEFAULT_DIR = "/var/lib/faultflow"
FILE_NAME = "toggle"
# What a toggle file holds (any version, on or off, padded or not): the switch byte, then key=value
# fields. Anything else is someone else's file, which the writer refuses to overwrite.
_RECORD = re.compile(rb"[01]?( +[a-z_]+=[!-~]*)* *\n?")


def file_in(directory: str) -> str:
    """The toggle file's path in a toggle directory (a node path or a mount point)."""
    return f"{directory.rstrip('/')}/{FILE_NAME}"


MODES = ("error", "hang")


@dataclass(frozen=True)
class Triggers:
    """How a fault shows: its mode and when it trips (the same for `shim on` and inject-xid)."""

    mode: str = "error"
    after_calls: int = 0
    probability: float = 1.0
    seed: int = 0
    hang_ms: int = 0

    def check(self) -> None:
        """BadInput naming the option at fault (the CLI spells the fields as options)."""
        if self.mode not in MODES:
            raise BadInput(f"--mode must be one of {', '.join(MODES)}, got {self.mode}")
        if not 0 <= self.after_calls <= MAX_COUNT:
            raise BadInput(f"--after-calls must be 0-{MAX_COUNT}, got {self.after_calls}")
        if math.isnan(self.probability) or not 0 < self.probability <= 1:
            raise BadInput(f"--probability must be in (0, 1], got {self.probability}")
        if not 0 <= self.seed <= MAX_COUNT:
            raise BadInput(f"--seed must be 0-{MAX_COUNT}, got {self.seed}")
        if not 0 <= self.hang_ms <= MAX_COUNT:
            raise BadInput(f"--hang-ms must be 0-{MAX_COUNT}, got {self.hang_ms}")
        if self.hang_ms and self.mode != "hang":
            raise BadInput("--hang-ms needs --mode hang")


def now_ms() -> int:
    return int(time.time() * 1000)


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

    @classmethod
    def switched_on(cls, xid: int, expires_ms: int, gpu: int = ALL_GPUS, triggers: Triggers = Triggers(), bus: str = "") -> Toggle:
        return cls(
            on=True, xid=xid, expires_ms=expires_ms, gpu=gpu, mode=triggers.mode, after_calls=triggers.after_calls,
            probability=triggers.probability, seed=triggers.seed, hang_ms=triggers.hang_ms, bus=bus,
        )  # fmt: skip

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

    def expired(self, now: int | None = None) -> bool:
        """Past its expiry, or without a valid one (0, or more than MAX_DURATION_MS away): the shim
        reads such a record as off."""
        left = self.expires_ms - (now if now is not None else now_ms())
        return not 0 < left <= MAX_DURATION_MS

    def active(self, now: int | None = None) -> bool:
        return self.on and not self.expired(now) and ALL_GPUS <= self.gpu <= MAX_GPU


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


def is_record(raw: bytes) -> bool:
    """Whether a file's content is a toggle record (or empty): what the writer may overwrite."""
    return len(raw) <= TOGGLE_SIZE and _RECORD.fullmatch(raw) is not None


def read(path: Path) -> Toggle:
    with open(path, "rb") as handle:
        return parse(handle.read(TOGGLE_SIZE))


def _open_record(path: Path, create: bool) -> int:
    """A read-write descriptor of the toggle file, never through a symbolic link; a missing file is
    created exclusively (`create`), an existing one must be a regular file holding a toggle record.
    BadInput when the path is none of these; FileNotFoundError when it is missing and not `create`."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        before = None
    if before is not None and stat.S_ISLNK(before.st_mode):
        raise BadInput(f"toggle file {path} is a symbolic link: refusing to follow it")
    if before is not None and not stat.S_ISREG(before.st_mode):
        raise BadInput(f"toggle file {path} is not a regular file")
    if before is None:
        if not create:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass  # created meanwhile by someone else: checked below like any existing file
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise BadInput(f"toggle file {path} is a symbolic link: refusing to follow it") from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInput(f"toggle file {path} is not a regular file")
        if not is_record(os.pread(fd, TOGGLE_SIZE + 1, 0)):
            raise BadInput(f"{path} is not a toggle record: refusing to overwrite it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_writable(path: Path) -> None:
    """Opens an existing toggle file for writing as `write` would, and closes it (nothing written).
    BadInput as `write`; OSError (e.g. EACCES, EROFS) when the file system refuses."""
    os.close(_open_record(path, create=False))


def _complete(toggle: Toggle) -> Toggle:
    """A record switched on gets the current time as `at_ms` (every switch-on is a new injection) and,
    without an expiry, the default one; one the shim would read as off is refused."""
    if not toggle.on:
        return toggle
    now = now_ms()
    toggle = replace(toggle, at_ms=toggle.at_ms or now, expires_ms=toggle.expires_ms or now + DEFAULT_DURATION_S * 1000)
    if not ALL_GPUS <= toggle.gpu <= MAX_GPU:
        raise BadInput(f"GPU {toggle.gpu} is not -1 (all) or 0-{MAX_GPU}")
    if toggle.expired(now):
        raise BadInput(f"expiry {toggle.expires_ms} is not within {MAX_DURATION_MS // 3_600_000} h from now")
    return toggle


def write(path: Path, toggle: Toggle, create: bool = True) -> None:
    """Rewrites the record in place in the order that keeps mapped readers consistent (see the module
    docstring for what it refuses and how it creates a missing file)."""
    toggle = _complete(toggle)
    fd = _open_record(Path(path), create)
    try:
        if os.fstat(fd).st_size < TOGGLE_SIZE:
            # A new, version-1 or short file: give it its full size while it reads as off
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
