"""GPU index → PCI bus id, from the driver's /proc tree (never nvidia-smi: it is not in the step image).

`/proc/driver/nvidia/gpus/<bus id>/information` has one directory per GPU; its `Device Minor:` line is
the host's device index (/dev/nvidia<minor>). NVSentinel normalises a PCI address to the last four
hex digits of the domain, bus and device, lower case, function dropped (nvsentinel.md §1.4), so that
is the form we return.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from steps.errors import BadInput

GPUS_DIR = "driver/nvidia/gpus"
_BUS_ID = re.compile(r"^(?P<domain>[0-9a-fA-F]{4,8}):(?P<bus>[0-9a-fA-F]{2}):(?P<device>[0-9a-fA-F]{2})(?:\.[0-7])?$")


@dataclass(frozen=True)
class Gpu:
    minor: int
    bus_id: str  # as the directory is named
    pci: str  # dddd:bb:dd, NVSentinel's normal form
    uuid: str | None


def normalise_pci(bus_id: str) -> str:
    found = _BUS_ID.fullmatch(bus_id.strip())
    if found is None:
        raise ValueError(f"not a PCI bus id: {bus_id!r}")
    return f"{found['domain'][-4:]}:{found['bus']}:{found['device']}".lower()


def _fields(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def list_gpus(proc_root: str) -> list[Gpu]:
    base = Path(proc_root) / GPUS_DIR
    if not base.is_dir():
        raise BadInput(f"no NVIDIA driver under {proc_root} ({base} missing): is --proc-root the host's /proc?")
    gpus = []
    for entry in sorted(base.iterdir()):
        info = entry / "information"
        try:
            fields = _fields(info.read_text())
            minor = int(fields["Device Minor"])
            pci = normalise_pci(entry.name)
        except (OSError, KeyError, ValueError):
            continue  # a GPU dir we cannot read is not one we can target
        gpus.append(Gpu(minor=minor, bus_id=entry.name, pci=pci, uuid=fields.get("GPU UUID")))
    return sorted(gpus, key=lambda g: g.minor)


def resolve_pci(proc_root: str, gpu_index: int) -> Gpu:
    gpus = list_gpus(proc_root)
    for gpu in gpus:
        if gpu.minor == gpu_index:
            return gpu
    have = ", ".join(str(g.minor) for g in gpus) or "none"
    raise BadInput(f"GPU index {gpu_index} is not on this node (device minors: {have})")
