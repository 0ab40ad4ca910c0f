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
    if (fault.gpu >= 0) {
        if (kind == FF_INIT) return 0; /* one broken GPU does not fail driver initialisation */
        int target = kind == FF_DEVICE ? device : ff_current_device();
        if (target != fault.gpu) return 0;
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
