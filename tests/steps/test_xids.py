"""The XID catalogue: complete, consistent with NVSentinel, and the source of the shim's C table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps.gpu import catalogue_import, shim_header
from steps.gpu.xids import CUDA_ERRORS, SEED_XIDS, XID_RANGE, catalogue, lookup
from tests.cli import faultflow

REPO = Path(__file__).resolve().parents[2]
SHARED_CATALOGUE = REPO.parent / "shared" / "data" / "nvsentinel-xid-catalog.json"


def test_every_xid_from_1_to_172_is_catalogued():
    assert list(catalogue()) == list(XID_RANGE)


def test_fatal_is_nvsentinel_rule_action_not_none():
    for xid in catalogue().values():
        assert xid.fatal == (xid.nvsentinel_action != "NONE"), xid.number


@pytest.mark.parametrize(
    "number,action,fatal",
    [
        (79, "RESTART_BM", True),
        (48, "COMPONENT_RESET", True),
        (74, "CONTACT_SUPPORT", True),
        (94, "NONE", False),
        (43, "NONE", False),
        (95, "COMPONENT_RESET", True),
        (119, "COMPONENT_RESET", True),
    ],
)
def test_seed_classification_matches_nvsentinel(number, action, fatal):
    assert (lookup(number).nvsentinel_action, lookup(number).fatal) == (action, fatal)


def test_reference_mistakes_are_fixed():
    assert lookup(43).call_error.driver_name == "CUDA_ERROR_LAUNCH_TIMEOUT"
    assert lookup(43).effect.call_error == 702  # on both APIs; 6 was a legacy runtime value
    assert lookup(43).call_error.runtime_name == "cudaErrorLaunchTimeout"
    assert lookup(74).effect.call_error == 220  # uncorrectable NVLink, not 217 "peer access unsupported"


def test_seed_xids_have_real_driver_text_and_a_reason():
    for number in SEED_XIDS:
        xid = lookup(number)
        assert xid.driver_text and xid.driver_text != xid.description, number
        assert xid.effect.why, number
        assert xid.effect.call_error != 0, number


def test_every_error_is_a_known_cuda_error():
    for xid in catalogue().values():
        assert xid.effect.call_error in CUDA_ERRORS and xid.effect.init_error in CUDA_ERRORS


def test_unknown_xid_is_a_readable_error():
    with pytest.raises(KeyError, match="unknown XID 173"):
        lookup(173)


def test_committed_shim_header_is_current():
    committed = (REPO / "shim" / "xid_table.h").read_text()
    assert committed == shim_header.render(), "shim/xid_table.h is stale: run `make shim`"


def test_header_check_command_detects_a_stale_header(tmp_path):
    stale = tmp_path / "xid_table.h"
    stale.write_text(shim_header.render().replace("[79] = { 999, 100", "[79] = { 100, 100"))
    assert shim_header.main(["--check", str(stale)]) == 1
    assert shim_header.main(["--write", str(stale)]) == 0
    assert shim_header.main(["--check", str(stale)]) == 0


def test_imported_nvsentinel_data_is_current():
    # CI has shared/ beside the checkout; a clone without it cannot re-derive the data it commits.
    if not SHARED_CATALOGUE.exists():
        pytest.skip(f"{SHARED_CATALOGUE} is not beside this checkout")
    committed = (REPO / "steps" / "gpu" / "data" / "nvsentinel_xids.json").read_text()
    assert committed == catalogue_import.render(SHARED_CATALOGUE)


def test_cli_table_lists_every_xid():
    done = faultflow("xids")
    assert done.returncode == 0, done.stderr
    table, trailer = done.stdout.split("\n\n", 1)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["XID", "NAME", "SEVERITY"]
    assert len(lines) == 1 + len(XID_RANGE)
    assert "NVSentinel NVIDIA/NVSentinel@0f6073182b25" in trailer and "gpu_metadata.json" in trailer
    row79 = next(line for line in lines if line.startswith("79 "))
    assert "RESTART_BM" in row79 and "CUDA_ERROR_UNKNOWN (999)" in row79 and "CUDA_ERROR_NO_DEVICE (100)" in row79


def test_cli_json_seed():
    done = faultflow("xids", "--json", "--seed")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    entries = document["xids"]
    assert [e["xid"] for e in entries] == list(SEED_XIDS)
    assert document["nvsentinel"]["commit"].startswith("0f6073182b25") and "PR #1629" in document["nvsentinel"]["not_reflected"][0]
    assert set(document["action_rules"]) == {"workbook", "recovery-text", "nvl5-decode"}
    assert "RESTART_VM" in document["metadata_rule"]
    by_xid = {e["xid"]: e for e in entries}
    assert by_xid[43]["cuda_driver_error"] == "CUDA_ERROR_LAUNCH_TIMEOUT"
    assert by_xid[94]["fatal"] is False


def test_cli_unknown_option_is_one_line_exit_2():
    done = faultflow("xids", "--nope")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("faultflow: error:")


def test_cli_json_carries_the_per_line_rule_and_the_metadata_dependence():
    done = faultflow("xids", "--json")
    by_xid = {e["xid"]: e for e in json.loads(done.stdout)["xids"]}
    assert by_xid[154]["action_rule"] == "recovery-text" and by_xid[154]["nvsentinel_action"] == "COMPONENT_RESET"
    assert by_xid[145]["action_rule"] == "nvl5-decode" and by_xid[145]["driver_text"].startswith("RLW_REMAP ")
    assert by_xid[48]["metadata_dependent"] and by_xid[48]["without_gpu_metadata"] == "RESTART_VM"
    assert not by_xid[79]["metadata_dependent"] and by_xid[79]["without_gpu_metadata"] == "RESTART_BM"
    assert "163" in by_xid[162]["note"] and "#1629" in by_xid[45]["note"]


def test_154_line_and_expected_action_agree_for_every_recovery_text():
    from steps.gpu.expectation import expect
    from steps.gpu.xids import RECOVERY, recovery_text

    for variant, recovery in RECOVERY.items():
        text = recovery_text(variant)
        assert text.endswith(f"({recovery.text})")
        assert expect(154, recovery=variant).action == recovery.action
    assert lookup(154).nvsentinel_action == "COMPONENT_RESET" and lookup(154).workbook_action == "CONTACT_SUPPORT"


def test_metadata_dependent_xids_are_the_ones_nvsentinel_rewrites():
    # nvsentinel-2026-12.md §2: the XIDs whose COMPONENT_RESET turns into RESTART_VM without metadata.
    listed = {46, 48, 62, 64, 95, 109, 110, 119, 120, 136, 140, 143, 155, 156, 158}
    workbook_resets = {x.number for x in catalogue().values() if x.workbook_action == "COMPONENT_RESET"}
    assert workbook_resets == listed
    assert {x.number for x in catalogue().values() if x.metadata_dependent} == listed | {145, 149, 154}
