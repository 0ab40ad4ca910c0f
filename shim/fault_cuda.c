/* The CUDA library's fault decision: which error a CUDA call returns, or whether it blocks, under the
 * active fault (control.c reads the toggle; xid_table.h gives each XID's errors). */
#define _GNU_SOURCE
#include <string.h>

#include "shim.h"
#include "xid_table.h"

__thread int ff_tl_injected __attribute__((tls_model("initial-exec")));
__thread int ff_tl_device __attribute__((tls_model("initial-exec")));

const struct ff_library ff_library = {.log_name = "faultflow-shim", .soname = "libcuda.so.1"};

const struct ff_entry *ff_find_entry(const char *name) {
    if (name[0] != 'c' || name[1] != 'u') return NULL;
    const struct ff_entry *tables[] = {ff_driver_entries, ff_runtime_entries};
    const size_t counts[] = {ff_driver_entry_count, ff_runtime_entry_count};
    for (size_t t = 0; t < 2; t++)
        for (size_t i = 0; i < counts[t]; i++)
            if (strcmp(tables[t][i].name, name) == 0) return &tables[t][i];
    return NULL;
}

static _Atomic int ff_last_logged; /* xid * 8 + kind * 2 + stalled of the last injection reported on stderr */

static int ff_current_device(void) {
    int device;
    if (ff_driver_current_device(&device) == 0) return device;
    return ff_tl_device; /* no current context yet: the device cudaSetDevice chose, 0 by default */
}

static void ff_report(const char *api, int xid, enum ff_kind kind, int stalled, int error) {
    int key = xid * 8 + (int)kind * 2 + stalled;
    if (atomic_exchange_explicit(&ff_last_logged, key, memory_order_relaxed) != key) {
        if (stalled)
            ff_log("stalling XID %d (%s): %s blocks", xid, ff_xid_table[xid].name, api);
        else
            ff_log("injecting XID %d (%s): %s returns %d", xid, ff_xid_table[xid].name, api, error);
    }
}

/* Bus ids of the process's devices, by CUDA ordinal, as the real driver reports them: asked once per
 * device (the driver's answer does not change while the process lives), on the slow path only.
 * 0: not known yet (the driver is not initialised, or the ordinal is out of range). */
#define FF_BUS_KNOWN (1ULL << 63)
static _Atomic unsigned long long ff_bus_of_device[FF_GPU_MAX + 1];

static int ff_device_bus(int device, unsigned long long *key) {
    if (device < 0 || device > FF_GPU_MAX) return 0;
    unsigned long long cached = atomic_load_explicit(&ff_bus_of_device[device], memory_order_relaxed);
    if (!cached) {
        char bus[64] = {0};
        if (ff_driver_device_bus(device, bus, sizeof bus - 1) != 0 || !ff_parse_bus_id(bus, &cached)) return 0;
        cached |= FF_BUS_KNOWN;
        atomic_store_explicit(&ff_bus_of_device[device], cached, memory_order_relaxed);
    }
    *key = cached & ~FF_BUS_KNOWN;
    return 1;
}

/* Whether calls on `device` (a CUDA ordinal of this process) are targeted. A toggle naming a bus id
 * means the host's GPU with that id, whatever ordinal the process sees it as (a pod holding host GPU 3
 * sees it as device 0): the driver tells. Where it cannot (not initialised), the ordinal `gpu`
 * decides, -1 meaning every device. */
static int ff_targets_device(const struct ff_fault *fault, int device) {
    unsigned long long want, have;
    if (fault->bus[0] && ff_parse_bus_id(fault->bus, &want) && ff_device_bus(device, &have)) return want == have;
    return fault->gpu < 0 || device == fault->gpu;
}

/* Calls that wait on the GPU's work: these are what a hung GPU holds (hang mode). */
static int ff_blocks_on_gpu(const char *api) {
    return strstr(api, "Synchronize") || strstr(api, "Launch") || strstr(api, "Memcpy");
}

int ff_fault_error(const char *api, enum ff_kind kind, int device) {
    struct ff_fault fault;
    if (!ff_active_fault(&fault)) {
        atomic_store_explicit(&ff_last_logged, 0, memory_order_relaxed);
        return 0;
    }
    if (fault.gpu >= 0 || fault.bus[0]) {
        if (kind == FF_INIT) return 0; /* one broken GPU does not fail driver initialisation */
        if (!ff_targets_device(&fault, kind == FF_DEVICE ? device : ff_current_device())) return 0;
    }
    const struct ff_xid *entry = &ff_xid_table[fault.xid];
    int error = kind == FF_INIT ? entry->init_error : entry->call_error;
    if (fault.mode == FF_MODE_HANG) {
        if (kind == FF_INIT || !ff_blocks_on_gpu(api) || !ff_trigger_fires(&fault)) return 0;
        ff_report(api, fault.xid, kind, 1, 0);
        /* Ended (switched off, or replaced by another injection): decide again under what is on now. */
        if (!ff_hang(&fault)) return ff_fault_error(api, kind, device);
        error = entry->call_error; /* the watchdog gave up on the work: the XID's error */
    } else if (!error || !ff_trigger_fires(&fault)) {
        return 0;
    }
    if (error) {
        ff_tl_injected = error;
        ff_report(api, fault.xid, kind, 0, error);
    }
    return error;
}
