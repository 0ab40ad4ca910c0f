"""The NVSentinel simulator's parser reads our lines as NVSentinel does, and agrees with what faultflow
expects (steps.gpu.expectation) for every XID, on nodes with and without GPU metadata.

No cluster: the written bytes go through journald's view (steps.gpu.kmsg.journald_message) into the
simulator's `classify`, exactly the path `NvsentinelSimulator.handle_record` takes.
"""

from __future__ import annotations

import pytest

from lab.nvsentinel_simulator import classify
from steps.gpu import expectation, kmsg
from steps.gpu.xids import RECOVERY, XID_RANGE

PCI = "0000:17:00"
OLD_DRIVER, NEW_DRIVER = "570.148.08", "580.105.08"


def metadata(driver: str = OLD_DRIVER, pci_address: str = "00000000:17:00.0") -> dict:
    return {
        "driver_version": driver,
        "gpus": [{"gpu_id": 0, "uuid": "GPU-11111111-2222-3333-4444-555555555555", "pci_address": pci_address}],
    }


def simulated(line: bytes, node_metadata: dict | None, seen: dict | None = None):
    return classify(kmsg.journald_message(line)[1], node_metadata, seen)


def cases():
    for xid in XID_RANGE:
        for variant in RECOVERY if xid == 154 else ["gpu-reset"]:
            for with_metadata in (True, False):
                for driver in (OLD_DRIVER, NEW_DRIVER) if with_metadata else ("",):
                    yield xid, variant, with_metadata, driver


def test_done_when_every_xid_with_and_without_metadata_gets_the_expected_action():
    checked, differences = 0, []
    for xid, variant, with_metadata, driver in cases():
        line = kmsg.xid_line(xid, PCI, 4242, "python3", recovery=variant, driver_version=driver)
        got = simulated(line, metadata(driver) if with_metadata else None)
        want = expectation.expect(xid, with_metadata, driver, variant)
        checked += 1
        if (got.action, got.error_code) != (want.action, want.error_code):
            differences.append(
                f"XID {xid} {variant} metadata={with_metadata} driver={driver}: simulator "
                f"{got.error_code}/{got.action}, expected {want.error_code}/{want.action}"
            )
    assert checked >= 172 * 3
    assert differences == []


def test_expectation_from_the_nodes_metadata_file(tmp_path):
    file = tmp_path / "gpu_metadata.json"
    missing = expectation.read_gpu_metadata(file)
    assert not missing.found and "does not exist" in missing.problem
    result = expectation.expect_on_node(48, PCI, missing)
    assert result.action == "RESTART_VM" and not result.gpu_metadata and "does not exist" in result.why
    import json

    file.write_text(json.dumps(metadata()))
    found = expectation.read_gpu_metadata(file)
    assert found.found and found.has(PCI) and found.driver_version == OLD_DRIVER
    assert expectation.expect_on_node(48, PCI, found).action == "COMPONENT_RESET"
    other = expectation.expect_on_node(48, "0000:99:00", found)
    assert other.action == "RESTART_VM" and "PCI 0000:99:00 is not in it" in other.why
    file.write_text("{not json")
    assert not expectation.read_gpu_metadata(file).found


# --- each difference from the catalogue, both ways -----------------------------------------------------


def test_154_action_follows_the_last_parentheses():
    base = f"<3>kernel: NVRM: Xid (PCI:{PCI}): 154, GPU recovery action changed from 0x0 (None) to "
    assert simulated(f"{base}0x2 (Node Reboot Required)\n".encode(), metadata()).action == "RESTART_BM"
    assert simulated(f"{base}0x1 (GPU Reset Required)\n".encode(), metadata()).action == "COMPONENT_RESET"
    assert simulated(f"{base}0x1 (GPU Reset Required)\n".encode(), None).action == "RESTART_VM"
    assert simulated(f"<3>kernel: NVRM: Xid (PCI:{PCI}): 154, recovery text lost\n".encode(), metadata()).action == "CONTACT_SUPPORT"


def test_nvl5_shape_is_decoded_and_a_description_falls_back_to_the_workbook():
    decoded = simulated(kmsg.xid_line(145, PCI, 1, "p"), metadata())
    assert (decoded.error_code, decoded.action) == ("145.RLW_REMAP", "COMPONENT_RESET")
    described = simulated(f"<3>kernel: NVRM: Xid (PCI:{PCI}): 145, pid=1, name=p, NVLINK: RLW Error\n".encode(), metadata())
    assert (described.error_code, described.action) == ("145", "CONTACT_SUPPORT")


def test_nvl5_pattern_version_follows_the_driver_in_the_metadata():
    v1_line = kmsg.xid_line(145, PCI, 1, "p", driver_version=OLD_DRIVER)
    assert simulated(v1_line, metadata(OLD_DRIVER)).action == "COMPONENT_RESET"
    assert simulated(v1_line, metadata(NEW_DRIVER)).action == "NONE"  # no V2 rule matches 0x82
    assert expectation.expect(145, True, NEW_DRIVER).action == "COMPONENT_RESET"  # so we write the V2 registers


def test_component_reset_needs_the_uuid_from_the_metadata_file():
    line = kmsg.xid_line(119, PCI, 1, "p")
    assert simulated(line, metadata()).action == "COMPONENT_RESET"
    # A UUID learnt from the driver's "GPU at PCI" line is not enough (nvsentinel.md §1.4).
    from_dmesg = simulated(line, None, {PCI: "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"})
    assert from_dmesg.uuid.startswith("GPU-aaaaaaaa") and from_dmesg.action == "RESTART_VM"
    # The reader cuts an 8-digit domain to 4 digits and drops the function.
    assert simulated(line, metadata(pci_address="0000:17:00.0")).action == "COMPONENT_RESET"
    assert simulated(line, metadata(pci_address="00000000:18:00.0")).action == "RESTART_VM"


@pytest.mark.parametrize(
    "message,action",
    [
        (f"NVRM: Xid (PCI:{PCI}): 999, pid=1, name=x", "CONTACT_SUPPORT"),  # not in the workbook
        (f"NVRM: Xid (PCI:{PCI}): 94, pid=1, name=x, Contained", "NONE"),
        (f"NVRM: Xid (PCI:{PCI}): 79, GPU has fallen off the bus.", "RESTART_BM"),  # newer drivers: no pid/name
    ],
)
def test_workbook_and_unknown_codes(message, action):
    assert classify(message, metadata()).action == action


def test_lines_nvsentinel_does_not_read_as_an_xid():
    assert classify(f"NVRM: GPU {PCI}.0: GPU has fallen off the bus.", metadata()) is None
    assert classify(f"NVRM: GPU at PCI:{PCI}: GPU-1", metadata()) is None
