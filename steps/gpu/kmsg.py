"""The kernel-log line that makes NVSentinel see an XID, and how it travels (nvsentinel.md §2, §7).

Path: write(/dev/kmsg) → kernel devkmsg_write → printk ring → journald's kmsg reader → journal →
syslog-health-monitor's MESSAGE. Two facts shape the line:

* the kernel forces facility LOG_USER on userspace writes, so journald does not stamp
  SYSLOG_IDENTIFIER=kernel but parses a leading `word:` token as the identifier and strips it from
  MESSAGE — a line starting `NVRM:` would lose its `NVRM:` and no longer match. We lead with the
  sacrificial identifier `kernel:` (as NVIDIA's own k8s-test-infra does);
* one write() is one record, and each open file is rate limited (10 records / 5 s), so every line
  gets its own open() and exactly one write(); never O_CREAT (a missing /dev/kmsg is an error, not a
  regular file to create). No shell is involved anywhere.
"""

from __future__ import annotations

import os
import re

from steps.errors import BadInput, InfrastructureError
from steps.gpu.xids import (
    DEFAULT_RECOVERY,
    FALLEN_OFF_TEXT,
    RECOVERY,
    line_text,
    lookup,
)

KERN_ERR = 3
# The kernel's record limit is ~1 KiB; stay well under it so nothing is truncated.
MAX_LINE = 900
PCI_SHORT = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}$")
# The regex's `name=([^,]+)` stops at a comma; a ')' or newline would also break the record.
PROC_NAME = re.compile(r"^[A-Za-z0-9_.:/+-]{1,64}$")


def xid_line(xid: int, pci: str, pid: int, proc: str, recovery: str = DEFAULT_RECOVERY, driver_version: str = "") -> bytes:
    """`<3>kernel: NVRM: Xid (PCI:dddd:bb:dd): <xid>, pid=<n>, name=<proc>, <driver text>\\n`.

    XID 154 and the NVLink-5 XIDs (144-150) are printed without `pid=…, name=…` (the driver's own
    format, which NVSentinel's NVL5 pattern expects); 154 ends in the `recovery` variant's text and the
    NVL5 registers follow the node's driver version (NVSentinel's V1/V2 decode).
    """
    try:
        entry = lookup(xid)
    except KeyError as error:
        raise BadInput(str(error.args[0])) from None
    if recovery not in RECOVERY:
        raise BadInput(f"recovery action {recovery!r} is not one of {', '.join(RECOVERY)}")
    if not PCI_SHORT.fullmatch(pci):
        raise BadInput(f"PCI address {pci!r} is not dddd:bb:dd in lower-case hex")
    if not 0 <= pid < 2**22 + 1:
        raise BadInput(f"pid {pid} is outside 0..4194304")
    if not PROC_NAME.fullmatch(proc):
        raise BadInput(f"process name {proc!r} must be 1-64 characters of [A-Za-z0-9_.:/+-]")
    process = f"pid={pid}, name={proc}, " if entry.with_process else ""
    text = f"<{KERN_ERR}>kernel: NVRM: Xid (PCI:{pci}): {xid}, {process}{line_text(xid, recovery, driver_version)}\n"
    raw = text.encode("ascii")
    if len(raw) > MAX_LINE:
        raise BadInput(f"XID line is {len(raw)} bytes, over the kernel record limit")
    return raw


def xid_records(xid: int, pci: str, pid: int, proc: str, recovery: str = DEFAULT_RECOVERY, driver_version: str = "") -> list[bytes]:
    """Every record the driver logs for the XID, in its order: the XID line, and for 79 the second line
    `NVRM: GPU dddd:bb:dd.0: GPU has fallen off the bus.` (nvsentinel.md §5)."""
    records = [xid_line(xid, pci, pid, proc, recovery, driver_version)]
    if xid == 79:
        records.append(f"<{KERN_ERR}>kernel: NVRM: GPU {pci}.0: {FALLEN_OFF_TEXT}\n".encode("ascii"))
    return records


def write_record(path: str, record: bytes) -> None:
    """One record: a fresh open() (its own rate-limit budget) and a single write()."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise BadInput(f"kernel log {path} does not exist") from None
    except (PermissionError, IsADirectoryError) as error:
        raise BadInput(f"kernel log {path} is not writable: {error.strerror}") from None
    try:
        written = os.write(fd, record)
    except OSError as error:
        raise InfrastructureError(f"write to {path} failed: {error.strerror}") from error
    finally:
        os.close(fd)
    if written != len(record):
        raise InfrastructureError(f"short write to {path}: {written} of {len(record)} bytes")


def check_writable(path: str) -> None:
    """Bad input (nothing written) when the kernel log cannot be opened for writing."""
    if os.path.isdir(path):
        raise BadInput(f"kernel log {path} is a directory")
    if not os.path.exists(path):
        raise BadInput(f"kernel log {path} does not exist")
    if not os.access(path, os.W_OK):
        raise BadInput(f"kernel log {path} is not writable")


# --- What journald makes of a record (for tests and the lab's NVSentinel simulator) -------------


def kernel_record(written: bytes) -> tuple[int, str]:
    """devkmsg_write: parse `<N>`, force facility LOG_USER when none is given, drop the trailing newline.

    Returns (syslog priority, text) as journald later reads them from /dev/kmsg.
    """
    text = written.decode("utf-8", errors="replace")
    level, facility = 4, 1  # default_message_loglevel, LOG_USER
    if text.startswith("<"):
        end = 1
        while end < len(text) and text[end].isdigit():
            end += 1
        if end > 1 and end < len(text) and text[end] == ">":
            value = int(text[1:end])
            level = value & 7
            if value >> 3:
                facility = value >> 3
            text = text[end + 1 :]
    if text.endswith("\n"):
        text = text[:-1]
    return facility * 8 + level, text


def syslog_parse_identifier(text: str) -> tuple[str | None, str | None, str]:
    """systemd's syslog_parse_identifier: a first token ending in ':' (optionally `ident[pid]:`) is eaten."""
    stripped = text.lstrip(" \t\n\r")
    token_len = 0
    while token_len < len(stripped) and stripped[token_len] not in " \t\n\r":
        token_len += 1
    if token_len == 0 or stripped[token_len - 1] != ":":
        return None, None, text
    ident = stripped[: token_len - 1]
    pid = None
    if ident.endswith("]") and "[" in ident:
        cut = ident.rindex("[")
        pid, ident = ident[cut + 1 : -1], ident[:cut]
    rest = stripped[token_len:]
    if rest[:1] and rest[0] in " \t\n\r":  # a single separator is consumed
        rest = rest[1:]
    return ident, pid, rest


def journald_message(written: bytes) -> tuple[str, str]:
    """(SYSLOG_IDENTIFIER, MESSAGE) that journald stores for bytes written to /dev/kmsg."""
    priority, text = kernel_record(written)
    if priority >> 3 == 0:  # LOG_KERN: only real kernel messages get here
        return "kernel", text
    ident, _pid, message = syslog_parse_identifier(text)
    return ident or "", message
