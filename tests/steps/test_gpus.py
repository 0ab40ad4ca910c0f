import pytest

from steps.errors import BadInput
from steps.gpu import pci as gpus


def make_proc(root, entries):
    for bus_id, minor in entries:
        d = root / "driver/nvidia/gpus" / bus_id
        d.mkdir(parents=True)
        (d / "information").write_text(
            f"Model: \t\t NVIDIA H100\nGPU UUID: \t GPU-{minor:08d}-aaaa\nBus Location: \t {bus_id}\nDevice Minor: \t {minor}\n"
        )
    return root


def test_minor_maps_to_lowercase_short_pci(tmp_path):
    proc = make_proc(tmp_path, [("0000:17:00.0", 1), ("0000:D8:00.0", 0), ("00000001:3A:00.0", 2)])
    assert gpus.resolve_pci(str(proc), 0).pci == "0000:d8:00"
    assert gpus.resolve_pci(str(proc), 1).pci == "0000:17:00"
    assert gpus.resolve_pci(str(proc), 2).pci == "0001:3a:00"
    assert gpus.resolve_pci(str(proc), 1).uuid == "GPU-00000001-aaaa"


def test_index_out_of_range_is_bad_input(tmp_path):
    proc = make_proc(tmp_path, [("0000:17:00.0", 0)])
    with pytest.raises(BadInput, match="device minors: 0"):
        gpus.resolve_pci(str(proc), 3)


def test_missing_driver_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no NVIDIA driver"):
        gpus.list_gpus(str(tmp_path))
