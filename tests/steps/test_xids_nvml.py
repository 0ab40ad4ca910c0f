"""The catalogue's NVML view: what the device plugin, DCGM and nvidia-smi see per XID."""

from __future__ import annotations

import json

from steps.gpu.shim_header import render
from steps.gpu.xids import GPU_LOST_XIDS, XID_RANGE, catalogue, lookup
from tests.cli import faultflow


def test_every_xid_reaches_nvml_as_an_xid_event_first():
    for xid in catalogue().values():
        assert xid.nvml.events[0] == "XidCriticalError", xid.number


def test_gpu_lost_is_fallen_off_the_bus():
    assert GPU_LOST_XIDS == {79}
    assert [n for n, x in catalogue().items() if x.nvml.gpu_lost] == [79]


def test_ecc_xids_raise_the_ecc_state():
    assert {n for n, x in catalogue().items() if x.nvml.uncorrectable_ecc} == {48, 94, 95}
    assert lookup(48).nvml.events == ("XidCriticalError", "DoubleBitEccError")
    assert lookup(63).nvml.remap == "pending" and not lookup(63).nvml.uncorrectable_ecc
    assert lookup(64).nvml.remap == "failure"
    assert lookup(48).nvml.retire_page and not lookup(95).nvml.retire_page


def test_header_carries_the_nvml_view():
    header = render()
    assert '[79] = { 999, 100, "GPU has fallen off the bus", 0x8, 1, 0, 0, 0 },' in header
    assert '[48] = { 214, 214, "Double Bit ECC Error", 0xa, 0, 1, 1, 1 },' in header


def test_cli_lists_the_nvml_view():
    done = faultflow("xids")
    lines = done.stdout.splitlines()
    rows = [line for line in lines[1:] if line[:1].isdigit()]  # (the NVSentinel notes follow the table)
    assert lines[0].split()[-1] == "NVML" and len(rows) == len(XID_RANGE)
    row79 = next(line for line in lines if line.startswith("79 "))
    assert row79.endswith("XidCriticalError, GPU_IS_LOST")
    entries = {e["xid"]: e for e in json.loads(faultflow("xids", "--json").stdout)["xids"]}
    assert entries[94]["nvml_events"] == ["XidCriticalError", "DoubleBitEccError"]
    assert entries[94]["nvml_remap"] == "pending" and entries[79]["nvml_gpu_lost"] is True
