"""An NVML consumer through Python ctypes, as pynvml and many exporters reach NVML: `CDLL("libnvidia-ml.so.1")`
(RTLD_LOCAL, so only dlsym on its handle reaches the functions). It checks the query paths the NVML
interposer changes; the event path is go-nvml's (lab/native/nvml_health).

    python -m lab.nvml_query OP...      (or `-`: one OP per stdin line, for a process that lives on)

Each OP prints one line "op=<NVML return> key=value ...":
    init  count  handle:I  uuid:I  pci:I  name:I  memory:I  temp:I
(`init` takes every device's handle and UUID, as a consumer does at start; the other device OPs use
those handles, so a device lost later is asked about through the handle it had.)
    ecc:I          volatile=N aggregate=N   (uncorrected ECC errors, NVML_VOLATILE_ECC / NVML_AGGREGATE_ECC)
    ecc_corrected:I   the same for corrected ones
    remapped:I     corr= unc= pending= failure=
    retired:I      count=N first=0x..      (double-bit retired pages, capacity 8)
    retired_size:I count=N                 (the size query: capacity 0)
    retired_pending:I pending=N
    handle_bus:BUS handle by PCI bus id    handle_uuid:I  handle by the UUID device I had at start
"""

from __future__ import annotations

import ctypes
import sys


class PciInfo(ctypes.Structure):
    _fields_ = [
        ("busIdLegacy", ctypes.c_char * 16),
        ("domain", ctypes.c_uint),
        ("bus", ctypes.c_uint),
        ("device", ctypes.c_uint),
        ("pciDeviceId", ctypes.c_uint),
        ("pciSubSystemId", ctypes.c_uint),
        ("busId", ctypes.c_char * 32),
    ]


class Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


CORRECTED, UNCORRECTED, VOLATILE, AGGREGATE, DOUBLE_BIT = 0, 1, 0, 1, 1


class Consumer:
    def __init__(self) -> None:
        self.nvml = ctypes.CDLL("libnvidia-ml.so.1")
        self.uuids: dict[int, bytes] = {}
        self.devices: dict[int, ctypes.c_void_p] = {}

    def handle(self, index: int) -> tuple[int, ctypes.c_void_p]:
        device = ctypes.c_void_p()
        return self.nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(device)), device

    def run(self, op: str) -> str:
        name, _, arg = op.partition(":")
        n = self.nvml
        if name == "init":
            result = n.nvmlInit_v2()
            count = ctypes.c_uint()
            if result == 0 and n.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0:
                for i in range(count.value):  # what a consumer learns at start, before any fault
                    code, opened = self.handle(i)
                    buffer = ctypes.create_string_buffer(96)
                    if code == 0:
                        self.devices[i] = opened
                    if code == 0 and n.nvmlDeviceGetUUID(opened, buffer, 96) == 0:
                        self.uuids[i] = buffer.value
            return f"init={result}"
        if name == "count":
            count = ctypes.c_uint()
            result = n.nvmlDeviceGetCount_v2(ctypes.byref(count))
            return f"count={result} value={count.value}"
        if name == "handle_bus":
            found = ctypes.c_void_p()
            return f"{op}={n.nvmlDeviceGetHandleByPciBusId_v2(arg.encode(), ctypes.byref(found))}"
        if name == "handle_uuid":
            found = ctypes.c_void_p()
            return f"{op}={n.nvmlDeviceGetHandleByUUID(self.uuids.get(int(arg), b'?'), ctypes.byref(found))}"
        if name == "handle":
            return f"{op}={self.handle(int(arg))[0]}"
        device = self.devices.get(int(arg))
        if device is None:
            return f"{op}=no-handle"
        if name in ("uuid", "name"):
            buffer = ctypes.create_string_buffer(96)
            call = n.nvmlDeviceGetUUID if name == "uuid" else n.nvmlDeviceGetName
            result = call(device, buffer, 96)
            return f"{op}={result} value={buffer.value.decode()}"
        if name == "pci":
            pci = PciInfo()
            result = n.nvmlDeviceGetPciInfo_v3(device, ctypes.byref(pci))
            return f"{op}={result} bus={pci.busId.decode()}"
        if name == "memory":
            memory = Memory()
            result = n.nvmlDeviceGetMemoryInfo(device, ctypes.byref(memory))
            return f"{op}={result} total={memory.total}"
        if name == "temp":
            temp = ctypes.c_uint()
            return f"{op}={n.nvmlDeviceGetTemperature(device, 0, ctypes.byref(temp))} value={temp.value}"
        if name in ("ecc", "ecc_corrected"):
            kind = UNCORRECTED if name == "ecc" else CORRECTED
            volatile, aggregate = ctypes.c_ulonglong(), ctypes.c_ulonglong()
            first = n.nvmlDeviceGetTotalEccErrors(device, kind, VOLATILE, ctypes.byref(volatile))
            second = n.nvmlDeviceGetTotalEccErrors(device, kind, AGGREGATE, ctypes.byref(aggregate))
            return f"{op}={first or second} volatile={volatile.value} aggregate={aggregate.value}"
        if name == "remapped":
            values = [ctypes.c_uint() for _ in range(4)]
            result = n.nvmlDeviceGetRemappedRows(device, *map(ctypes.byref, values))
            corr, unc, pending, failure = (v.value for v in values)
            return f"{op}={result} corr={corr} unc={unc} pending={pending} failure={failure}"
        if name in ("retired", "retired_size"):
            capacity = 8 if name == "retired" else 0
            pages = ctypes.c_uint(capacity)
            addresses = (ctypes.c_ulonglong * 8)()
            result = n.nvmlDeviceGetRetiredPages(device, DOUBLE_BIT, ctypes.byref(pages), addresses if capacity else None)
            first = f" first=0x{addresses[0]:x}" if capacity and pages.value else ""
            return f"{op}={result} count={pages.value}{first}"
        if name == "retired_pending":
            status = ctypes.c_int()
            return f"{op}={n.nvmlDeviceGetRetiredPagesPendingStatus(device, ctypes.byref(status))} pending={status.value}"
        raise SystemExit(f"unknown operation {op}")


def main(argv: list[str]) -> int:
    consumer = Consumer()
    ops = (line.strip() for line in sys.stdin) if argv == ["-"] else iter(argv)
    for op in ops:
        if op:
            print(consumer.run(op), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
