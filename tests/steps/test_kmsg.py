"""The kernel-log line survives devkmsg_write + journald and matches NVSentinel's own regex."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steps.errors import BadInput
from steps.gpu import kmsg, nvsentinel
from steps.gpu.xids import NO_PROCESS_XIDS, SEED_XIDS, XID_RANGE, lookup


@pytest.mark.parametrize("xid", SEED_XIDS)
def test_seed_xid_line_matches_after_journald(xid):
    raw = kmsg.xid_line(xid, "0000:17:00", 4242, "python3")
    ident, message = kmsg.journald_message(raw)
    assert ident == "kernel"
    assert message.startswith("NVRM: Xid (PCI:0000:17:00): ")
    found = nvsentinel.match_xid(message)
    assert found is not None
    assert (found.pci, found.xid, found.pid, found.name) == ("0000:17:00", xid, 4242, "python3")
    assert message.endswith(lookup(xid).driver_text)


@pytest.mark.parametrize("xid", sorted(NO_PROCESS_XIDS))
def test_154_and_nvl5_lines_are_printed_without_a_process(xid):
    # The driver's own format: NVSentinel's NVL5 pattern and 154's last-parentheses rule read it.
    _, message = kmsg.journald_message(kmsg.xid_line(xid, "0000:17:00", 4242, "python3"))
    assert message == f"NVRM: Xid (PCI:0000:17:00): {xid}, {lookup(xid).driver_text}"
    assert "pid=" not in message


def test_xid_79_writes_both_driver_lines_in_order():
    records = kmsg.xid_records(79, "0000:17:00", 1, "python3")
    assert [kmsg.journald_message(r)[1] for r in records] == [
        "NVRM: Xid (PCI:0000:17:00): 79, pid=1, name=python3, GPU has fallen off the bus.",
        "NVRM: GPU 0000:17:00.0: GPU has fallen off the bus.",
    ]
    assert kmsg.xid_records(48, "0000:17:00", 1, "python3") == [kmsg.xid_line(48, "0000:17:00", 1, "python3")]


def test_nvl5_registers_follow_the_driver_version():
    old = kmsg.journald_message(kmsg.xid_line(145, "0000:17:00", 1, "p", driver_version="570.148.08"))[1]
    new = kmsg.journald_message(kmsg.xid_line(145, "0000:17:00", 1, "p", driver_version="580.105.08"))[1]
    assert "(0x00000082 0x00000040" in old and "(0x00000004 0x00000040" in new


def test_unknown_recovery_variant_is_bad_input():
    with pytest.raises(BadInput, match="recovery action"):
        kmsg.xid_line(154, "0000:17:00", 1, "p", recovery="reboot-please")


def test_line_starting_with_nvrm_loses_its_prefix_in_journald():
    # The reason for the sacrificial `kernel:` identifier: journald eats a leading `word:`.
    ident, message = kmsg.journald_message(b"<3>NVRM: Xid (PCI:0000:17:00): 79, pid=1, name=x, GPU has fallen off the bus.\n")
    assert ident == "NVRM"
    assert nvsentinel.match_xid(message) is None


def test_real_kernel_facility_keeps_the_whole_line():
    # A facility-0 record (what the driver itself logs) is not identifier-parsed.
    assert kmsg.journald_message(b"NVRM: x\n") == ("NVRM", "x")  # no prefix: kernel forces LOG_USER
    priority, text = kmsg.kernel_record(b"<3>kernel: a\n")
    assert priority == 8 + 3 and text == "kernel: a"


def test_every_catalogue_xid_matches():
    for xid in XID_RANGE:
        _, message = kmsg.journald_message(kmsg.xid_line(xid, "abcd:ef:1f", 1, "vllm"))
        assert nvsentinel.match_xid(message).xid == xid


@settings(max_examples=300, deadline=None)
@given(
    xid=st.integers(min_value=XID_RANGE.start, max_value=XID_RANGE.stop - 1),
    domain=st.integers(0, 0xFFFF),
    bus=st.integers(0, 0xFF),
    device=st.integers(0, 0x1F),
    pid=st.integers(0, 2**22),
    proc=st.from_regex(r"[A-Za-z0-9_.:/+-]{1,64}", fullmatch=True),
)
def test_property_line_roundtrips_through_journald_and_regex(xid, domain, bus, device, pid, proc):
    pci = f"{domain:04x}:{bus:02x}:{device:02x}"
    raw = kmsg.xid_line(xid, pci, pid, proc)
    assert raw.count(b"\n") == 1 and raw.endswith(b"\n")
    _, message = kmsg.journald_message(raw)
    found = nvsentinel.match_xid(message)
    assert found is not None
    if xid in NO_PROCESS_XIDS:
        assert (found.pci, found.xid, found.pid, found.name) == (pci, xid, None, None)
    else:
        assert (found.pci, found.xid, found.pid, found.name) == (pci, xid, pid, proc)


@pytest.mark.parametrize(
    "args",
    [
        (0, "0000:17:00", 1, "p"),
        (173, "0000:17:00", 1, "p"),
        (79, "0000:17:00.0", 1, "p"),
        (79, "0000:D8:00", 1, "p"),
        (79, "00000000:17:00", 1, "p"),
        (79, "0000:17:00", -1, "p"),
        (79, "0000:17:00", 1, "a,b"),
        (79, "0000:17:00", 1, ""),
        (79, "0000:17:00", 1, "x\n"),
    ],
)
def test_bad_line_parameters(args):
    with pytest.raises(BadInput):
        kmsg.xid_line(*args)


def test_write_record_is_one_write_on_a_fresh_open(tmp_path):
    sink = tmp_path / "kmsg"
    sink.write_bytes(b"")
    kmsg.write_record(str(sink), b"<3>kernel: one\n")
    kmsg.write_record(str(sink), b"<3>kernel: two\n")
    # O_WRONLY without O_APPEND on a regular file: each fresh open writes at offset 0, which proves
    # a fresh open per record (a character device like /dev/kmsg has no offset).
    assert sink.read_bytes() == b"<3>kernel: two\n"


def test_write_record_never_creates(tmp_path):
    with pytest.raises(BadInput):
        kmsg.write_record(str(tmp_path / "missing"), b"x\n")
    assert not (tmp_path / "missing").exists()


def test_write_to_fifo_is_one_record(tmp_path):
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        kmsg.write_record(str(fifo), b"<3>kernel: NVRM: Xid (PCI:0000:01:00): 79, pid=1, name=a, b\n")
        assert os.read(reader, 4096).count(b"\n") == 1
    finally:
        os.close(reader)
