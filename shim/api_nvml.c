/* NVML wrappers (libnvidia-ml, nvml*): what the node's health readers see of an injected XID.
 *
 * Built into libfaultflow_nvml.so with control.c and interpose.c (why a sibling library: control.h).
 * Driven by the same toggle and XID table as the CUDA library. While a fault is active, on the
 * targeted device (the toggle's bus id, else its index, else every device):
 *   - nvmlEventSetWait/_v2 delivers each event type the XID raises (xid_table.h nvml_events) once per
 *     injection and event set: XidCriticalError with eventData = the XID, gpuInstanceId and
 *     computeInstanceId 0xFFFFFFFF (a device-level error, as the driver reports it outside MIG
 *     instances; consumers match the device by UUID then);
 *   - after a GPU-lost XID (79) every wrapped call on the device returns NVML_ERROR_GPU_IS_LOST, the
 *     handle lookups included, and so does nvmlEventSetWait on a set holding it once its events are out;
 *   - ECC XIDs raise the uncorrected ECC counters, remapped rows and retired pages as the driver reports
 *     them (where the real device answers NOT_SUPPORTED, it still does).
 * Functions not listed here are not interposed at all. The wrapped ones cost, when no fault is on,
 * the same compare and jump as the CUDA wrappers; event registration is recorded always (it happens
 * before any fault) and waits are cut into slices while a toggle is mapped, so a fault switched on
 * during a long wait is delivered within a slice.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "control.h"
#include "nvml_types.h"
#include "xid_table.h"

const struct ff_library ff_library = {.log_name = "faultflow-nvml", .soname = "libnvidia-ml.so.1"};

/* NVML has no current device: every call names its device. */
int ff_driver_current_device(int *device) {
    (void)device;
    return -1;
}

/* X(name, parameters, arguments, device expression) — plain device queries: GPU lost, else passed on. */
#define FF_NVML_DEVICE_CALLS(X)                                                                                    \
    X(nvmlDeviceGetName, (nvmlDevice_t d, char *name, unsigned int n), (d, name, n))                              \
    X(nvmlDeviceGetUUID, (nvmlDevice_t d, char *uuid, unsigned int n), (d, uuid, n))                              \
    X(nvmlDeviceGetSerial, (nvmlDevice_t d, char *serial, unsigned int n), (d, serial, n))                        \
    X(nvmlDeviceGetBoardPartNumber, (nvmlDevice_t d, char *part, unsigned int n), (d, part, n))                   \
    X(nvmlDeviceGetIndex, (nvmlDevice_t d, unsigned int *index), (d, index))                                      \
    X(nvmlDeviceGetMinorNumber, (nvmlDevice_t d, unsigned int *minor), (d, minor))                                \
    X(nvmlDeviceGetPciInfo, (nvmlDevice_t d, nvmlPciInfo_t *pci), (d, pci))                                       \
    X(nvmlDeviceGetPciInfo_v2, (nvmlDevice_t d, nvmlPciInfo_t *pci), (d, pci))                                    \
    X(nvmlDeviceGetPciInfo_v3, (nvmlDevice_t d, nvmlPciInfo_t *pci), (d, pci))                                    \
    X(nvmlDeviceGetMemoryInfo, (nvmlDevice_t d, void *memory), (d, memory))                                       \
    X(nvmlDeviceGetMemoryInfo_v2, (nvmlDevice_t d, void *memory), (d, memory))                                    \
    X(nvmlDeviceGetBAR1MemoryInfo, (nvmlDevice_t d, void *bar1), (d, bar1))                                       \
    X(nvmlDeviceGetTemperature, (nvmlDevice_t d, int sensor, unsigned int *temp), (d, sensor, temp))              \
    X(nvmlDeviceGetPowerUsage, (nvmlDevice_t d, unsigned int *mw), (d, mw))                                       \
    X(nvmlDeviceGetTotalEnergyConsumption, (nvmlDevice_t d, unsigned long long *mj), (d, mj))                     \
    X(nvmlDeviceGetPowerManagementLimit, (nvmlDevice_t d, unsigned int *mw), (d, mw))                             \
    X(nvmlDeviceGetUtilizationRates, (nvmlDevice_t d, void *rates), (d, rates))                                   \
    X(nvmlDeviceGetClockInfo, (nvmlDevice_t d, int type, unsigned int *mhz), (d, type, mhz))                      \
    X(nvmlDeviceGetMaxClockInfo, (nvmlDevice_t d, int type, unsigned int *mhz), (d, type, mhz))                   \
    X(nvmlDeviceGetPerformanceState, (nvmlDevice_t d, int *state), (d, state))                                    \
    X(nvmlDeviceGetCurrentClocksEventReasons, (nvmlDevice_t d, unsigned long long *reasons), (d, reasons))        \
    X(nvmlDeviceGetFanSpeed, (nvmlDevice_t d, unsigned int *speed), (d, speed))                                   \
    X(nvmlDeviceGetPersistenceMode, (nvmlDevice_t d, int *mode), (d, mode))                                       \
    X(nvmlDeviceGetEccMode, (nvmlDevice_t d, int *current, int *pending), (d, current, pending))                  \
    X(nvmlDeviceGetMigMode, (nvmlDevice_t d, unsigned int *current, unsigned int *pending), (d, current, pending)) \
    X(nvmlDeviceGetMaxMigDeviceCount, (nvmlDevice_t d, unsigned int *count), (d, count))                          \
    X(nvmlDeviceGetArchitecture, (nvmlDevice_t d, unsigned int *arch), (d, arch))                                 \
    X(nvmlDeviceGetCudaComputeCapability, (nvmlDevice_t d, int *major, int *minor), (d, major, minor))            \
    X(nvmlDeviceGetComputeRunningProcesses_v3, (nvmlDevice_t d, unsigned int *count, void *infos), (d, count, infos)) \
    X(nvmlDeviceGetNvLinkState, (nvmlDevice_t d, unsigned int link, int *active), (d, link, active))              \
    X(nvmlDeviceGetSupportedEventTypes, (nvmlDevice_t d, unsigned long long *types), (d, types))                  \
    X(nvmlDeviceGetMemoryErrorCounter, (nvmlDevice_t d, int type, int counter, int location, unsigned long long *count), \
      (d, type, counter, location, count))

/* Calls that hand out a device: the device is lost once they would hand out a lost one. */
#define FF_NVML_HANDLE_CALLS(X)                                                                                    \
    X(nvmlDeviceGetHandleByIndex, (unsigned int index, nvmlDevice_t *d), (index, d))                              \
    X(nvmlDeviceGetHandleByIndex_v2, (unsigned int index, nvmlDevice_t *d), (index, d))                           \
    X(nvmlDeviceGetHandleByUUID, (const char *uuid, nvmlDevice_t *d), (uuid, d))                                  \
    X(nvmlDeviceGetHandleByPciBusId, (const char *bus, nvmlDevice_t *d), (bus, d))                                \
    X(nvmlDeviceGetHandleByPciBusId_v2, (const char *bus, nvmlDevice_t *d), (bus, d))

/* Written by hand below. */
#define FF_NVML_SPECIAL_CALLS(X)                                                                                   \
    X(nvmlDeviceRegisterEvents, (nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set), (d, types, set))  \
    X(nvmlEventSetWait, (nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms), (set, data, ms))            \
    X(nvmlEventSetWait_v2, (nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms), (set, data, ms))         \
    X(nvmlEventSetFree, (nvmlEventSet_t set), (set))                                                              \
    X(nvmlDeviceGetTotalEccErrors, (nvmlDevice_t d, int type, int counter, unsigned long long *count),            \
      (d, type, counter, count))                                                                                  \
    X(nvmlDeviceGetRemappedRows,                                                                                  \
      (nvmlDevice_t d, unsigned int *corr, unsigned int *unc, unsigned int *pending, unsigned int *failure),      \
      (d, corr, unc, pending, failure))                                                                           \
    X(nvmlDeviceGetRetiredPages, (nvmlDevice_t d, int cause, unsigned int *count, unsigned long long *addresses), \
      (d, cause, count, addresses))                                                                               \
    X(nvmlDeviceGetRetiredPages_v2,                                                                               \
      (nvmlDevice_t d, int cause, unsigned int *count, unsigned long long *addresses, unsigned long long *times), \
      (d, cause, count, addresses, times))                                                                        \
    X(nvmlDeviceGetRetiredPagesPendingStatus, (nvmlDevice_t d, int *pending), (d, pending))

#define FF_NVML_ALL(X) FF_NVML_DEVICE_CALLS(X) FF_NVML_HANDLE_CALLS(X) FF_NVML_SPECIAL_CALLS(X)

#define FF_INDEX(name, params, args) FF_NV_##name,
enum { FF_NVML_ALL(FF_INDEX) FF_NV_COUNT };

#define FF_SLOW_DECLARE(name, params, args) static nvmlReturn_t ff_slow_##name params;
FF_NVML_DEVICE_CALLS(FF_SLOW_DECLARE)
FF_NVML_HANDLE_CALLS(FF_SLOW_DECLARE)
#define FF_SLOT(name, params, args) [FF_NV_##name] = (void *)ff_slow_##name,
static void *_Atomic ff_nvml_real[FF_NV_COUNT] = {FF_NVML_DEVICE_CALLS(FF_SLOT) FF_NVML_HANDLE_CALLS(FF_SLOT)};

#define FF_DECLARE(name, params, args) FF_EXPORT nvmlReturn_t name params;
FF_NVML_ALL(FF_DECLARE)

#define FF_ENTRY(name, params, args) {#name, (void *)name, &ff_nvml_real[FF_NV_##name], (void *)ff_slow_##name, 1},
#define FF_SPECIAL_ENTRY(name, params, args) {#name, (void *)name, &ff_nvml_real[FF_NV_##name], NULL, 1},
static const struct ff_entry ff_nvml_entries[] = {
    FF_NVML_DEVICE_CALLS(FF_ENTRY) FF_NVML_HANDLE_CALLS(FF_ENTRY) FF_NVML_SPECIAL_CALLS(FF_SPECIAL_ENTRY)};

const struct ff_entry *ff_find_entry(const char *name) {
    if (strncmp(name, "nvml", 4) != 0) return NULL;
    for (size_t i = 0; i < FF_NV_COUNT; i++)
        if (strcmp(ff_nvml_entries[i].name, name) == 0) return &ff_nvml_entries[i];
    return NULL;
}

#define FF_REAL(name, params) ((nvmlReturn_t(*) params)ff_real_of(&ff_nvml_entries[FF_NV_##name]))

/* ---- which device a fault targets ---- */

static int ff_targets(const struct ff_fault *fault, nvmlDevice_t device) {
    if (fault->bus[0]) {
        nvmlPciInfo_t pci;
        nvmlReturn_t (*pci_info)(nvmlDevice_t, nvmlPciInfo_t *) = FF_REAL(nvmlDeviceGetPciInfo_v3, (nvmlDevice_t, nvmlPciInfo_t *));
        unsigned long long want, have;
        return pci_info && pci_info(device, &pci) == FF_NVML_SUCCESS && ff_parse_bus_id(fault->bus, &want) &&
               ff_parse_bus_id(pci.busId, &have) && want == have;
    }
    if (fault->gpu < 0) return 1;
    unsigned int index;
    nvmlReturn_t (*get_index)(nvmlDevice_t, unsigned int *) = FF_REAL(nvmlDeviceGetIndex, (nvmlDevice_t, unsigned int *));
    return get_index && get_index(device, &index) == FF_NVML_SUCCESS && (int)index == fault->gpu;
}

static _Atomic long long ff_lost_logged = -1;

/* The XID table entry of the fault on `device`, or NULL when none targets it. */
static const struct ff_xid *ff_device_fault(nvmlDevice_t device, struct ff_fault *fault) {
    if (!ff_active_fault(fault) || !ff_targets(fault, device)) return NULL;
    return &ff_xid_table[fault->xid];
}

static nvmlReturn_t ff_lost_error(const char *api, nvmlDevice_t device) {
    struct ff_fault fault;
    const struct ff_xid *xid = ff_device_fault(device, &fault);
    if (!xid || !xid->nvml_lost) return FF_NVML_SUCCESS;
    if (atomic_exchange(&ff_lost_logged, fault.at_ms) != fault.at_ms)
        ff_log("XID %d (%s): %s returns NVML_ERROR_GPU_IS_LOST", fault.xid, xid->name, api);
    return FF_NVML_ERROR_GPU_IS_LOST;
}

/* ---- plain device queries and handle lookups ---- */

#define FF_DEVICE_WRAPPER(name, params, args)                                                          \
    static __attribute__((noinline, cold)) nvmlReturn_t ff_slow_##name params {                       \
        nvmlReturn_t (*fn) params = FF_REAL(name, params);                                             \
        if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;                                              \
        nvmlReturn_t lost = ff_lost_error(#name, d);                                                   \
        return lost ? lost : fn args;                                                                  \
    }                                                                                                  \
    FF_EXPORT nvmlReturn_t name params {                                                               \
        if (FF_FAULT_POSSIBLE()) return ff_slow_##name args;                                           \
        nvmlReturn_t (*fn) params =                                                                    \
            (nvmlReturn_t(*) params)atomic_load_explicit(&ff_nvml_real[FF_NV_##name], memory_order_acquire); \
        return fn args; /* the slow path itself until the real function is known */                    \
    }
FF_NVML_DEVICE_CALLS(FF_DEVICE_WRAPPER)

#define FF_HANDLE_WRAPPER(name, params, args)                                                          \
    static __attribute__((noinline, cold)) nvmlReturn_t ff_slow_##name params {                       \
        nvmlReturn_t (*fn) params = FF_REAL(name, params);                                             \
        if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;                                              \
        nvmlReturn_t result = fn args;                                                                 \
        if (result != FF_NVML_SUCCESS || !FF_FAULT_POSSIBLE()) return result;                          \
        return ff_lost_error(#name, *d);                                                               \
    }                                                                                                  \
    FF_EXPORT nvmlReturn_t name params {                                                               \
        if (FF_FAULT_POSSIBLE()) return ff_slow_##name args;                                           \
        nvmlReturn_t (*fn) params =                                                                    \
            (nvmlReturn_t(*) params)atomic_load_explicit(&ff_nvml_real[FF_NV_##name], memory_order_acquire); \
        return fn args; /* the slow path itself until the real function is known */                    \
    }
FF_NVML_HANDLE_CALLS(FF_HANDLE_WRAPPER)

/* ---- events ---- */

#define FF_MAX_SETS 32
#define FF_MAX_DEVICES 64

/* What each event set was registered for, and which of the current injection's events it has had. */
struct ff_set_record {
    nvmlEventSet_t set;
    size_t devices;
    nvmlDevice_t device[FF_MAX_DEVICES];
    unsigned long long registered[FF_MAX_DEVICES];
    unsigned long long delivered[FF_MAX_DEVICES]; /* event types of `injection` handed out */
    long long injection;                          /* at_ms * 256 + xid of the injection `delivered` is for */
};

static pthread_mutex_t ff_sets_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ff_set_record ff_sets[FF_MAX_SETS];

static struct ff_set_record *ff_set_find(nvmlEventSet_t set, int create) {
    struct ff_set_record *free_slot = NULL;
    for (size_t i = 0; i < FF_MAX_SETS; i++) {
        if (ff_sets[i].set == set) return &ff_sets[i];
        if (!ff_sets[i].set && !free_slot) free_slot = &ff_sets[i];
    }
    if (create && free_slot) {
        memset(free_slot, 0, sizeof *free_slot);
        free_slot->set = set;
        free_slot->injection = -1;
    }
    return create ? free_slot : NULL;
}

FF_EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
    nvmlReturn_t (*fn)(nvmlDevice_t, unsigned long long, nvmlEventSet_t) =
        FF_REAL(nvmlDeviceRegisterEvents, (nvmlDevice_t, unsigned long long, nvmlEventSet_t));
    if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;
    if (FF_FAULT_POSSIBLE()) {
        nvmlReturn_t lost = ff_lost_error("nvmlDeviceRegisterEvents", d);
        if (lost) return lost;
    }
    nvmlReturn_t result = fn(d, types, set);
    if (result != FF_NVML_SUCCESS) return result;
    pthread_mutex_lock(&ff_sets_lock);
    struct ff_set_record *record = ff_set_find(set, 1);
    if (record) {
        size_t i = 0;
        while (i < record->devices && record->device[i] != d) i++;
        if (i < FF_MAX_DEVICES) {
            if (i == record->devices) record->device[record->devices++] = d;
            record->registered[i] |= types;
        }
    }
    pthread_mutex_unlock(&ff_sets_lock);
    if (!record) ff_log("more than %d event sets: set %p gets no injected events", FF_MAX_SETS, set);
    return result;
}

FF_EXPORT nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) {
    nvmlReturn_t (*fn)(nvmlEventSet_t) = FF_REAL(nvmlEventSetFree, (nvmlEventSet_t));
    if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;
    pthread_mutex_lock(&ff_sets_lock);
    struct ff_set_record *record = ff_set_find(set, 0);
    if (record) memset(record, 0, sizeof *record);
    pthread_mutex_unlock(&ff_sets_lock);
    return fn(set);
}

/* The order the driver reports an XID's events in: the XID first, then what it did to memory. */
static const unsigned long long ff_event_order[] = {FF_NVML_EVENT_XID_CRITICAL, FF_NVML_EVENT_DOUBLE_BIT_ECC,
                                                    FF_NVML_EVENT_SINGLE_BIT_ECC};

/* Fills `data` with the next event of the active injection this set has not had yet (1), or says the
 * set holds a lost device with nothing left to deliver (-1), or neither (0). */
static int ff_next_event(nvmlEventSet_t set, nvmlEventData_t *data, struct ff_fault *fault) {
    if (!ff_active_fault(fault)) return 0;
    const struct ff_xid *xid = &ff_xid_table[fault->xid];
    long long injection = fault->at_ms * 256 + fault->xid;
    int found = 0;
    pthread_mutex_lock(&ff_sets_lock);
    struct ff_set_record *record = ff_set_find(set, 0);
    if (record && record->injection != injection) {
        record->injection = injection;
        memset(record->delivered, 0, sizeof record->delivered);
    }
    for (size_t i = 0; record && i < record->devices && found != 1; i++) {
        if (!ff_targets(fault, record->device[i])) continue;
        unsigned long long due = xid->nvml_events & record->registered[i] & ~record->delivered[i];
        for (size_t k = 0; k < sizeof ff_event_order / sizeof ff_event_order[0]; k++) {
            unsigned long long type = ff_event_order[k];
            if (!(due & type)) continue;
            record->delivered[i] |= type;
            *data = (nvmlEventData_t){record->device[i], type, type == FF_NVML_EVENT_XID_CRITICAL ? (unsigned)fault->xid : 0,
                                      FF_NVML_NO_INSTANCE, FF_NVML_NO_INSTANCE};
            found = 1;
            break;
        }
        if (!found && xid->nvml_lost) found = -1;
    }
    pthread_mutex_unlock(&ff_sets_lock);
    if (found == 1)
        ff_log("XID %d (%s): nvmlEventSetWait delivers event type 0x%llx", fault->xid, xid->name, data->eventType);
    return found;
}

#define FF_WAIT_SLICE_MS 100u

static nvmlReturn_t ff_event_wait(nvmlReturn_t (*real)(nvmlEventSet_t, nvmlEventData_t *, unsigned int),
                                  nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms) {
    if (!real) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;
    struct ff_fault fault;
    for (;;) {
        if (FF_FAULT_POSSIBLE()) {
            int next = ff_next_event(set, data, &fault);
            if (next == 1) return FF_NVML_SUCCESS;
            if (next == -1) return FF_NVML_ERROR_GPU_IS_LOST;
        }
        /* Without a toggle nothing can switch a fault on during the wait: one real wait. */
        unsigned int slice = ff_toggle_mapped() && ms > FF_WAIT_SLICE_MS ? FF_WAIT_SLICE_MS : ms;
        nvmlReturn_t result = real(set, data, slice);
        ms -= slice;
        if (result != FF_NVML_ERROR_TIMEOUT || ms == 0) return result;
    }
}

FF_EXPORT nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms) {
    return ff_event_wait(FF_REAL(nvmlEventSetWait, (nvmlEventSet_t, nvmlEventData_t *, unsigned int)), set, data, ms);
}

FF_EXPORT nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned int ms) {
    return ff_event_wait(FF_REAL(nvmlEventSetWait_v2, (nvmlEventSet_t, nvmlEventData_t *, unsigned int)), set, data,
                         ms);
}

/* ---- ECC state ---- */

#define FF_RETIRED_PAGE_ADDRESS 0x7fdf0de80ull /* the physAddr of the catalogue's XID 48 kernel-log line */

FF_EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, int type, int counter, unsigned long long *count) {
    nvmlReturn_t (*fn)(nvmlDevice_t, int, int, unsigned long long *) =
        FF_REAL(nvmlDeviceGetTotalEccErrors, (nvmlDevice_t, int, int, unsigned long long *));
    if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;
    if (!FF_FAULT_POSSIBLE()) return fn(d, type, counter, count);
    nvmlReturn_t lost = ff_lost_error("nvmlDeviceGetTotalEccErrors", d);
    if (lost) return lost;
    nvmlReturn_t result = fn(d, type, counter, count);
    struct ff_fault fault;
    const struct ff_xid *xid = ff_device_fault(d, &fault);
    if (result == FF_NVML_SUCCESS && xid && xid->nvml_ecc && type == FF_NVML_MEMORY_ERROR_UNCORRECTED) *count += 1;
    return result;
}

FF_EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t d, unsigned int *corr, unsigned int *unc,
                                                 unsigned int *pending, unsigned int *failure) {
    nvmlReturn_t (*fn)(nvmlDevice_t, unsigned int *, unsigned int *, unsigned int *, unsigned int *) = FF_REAL(
        nvmlDeviceGetRemappedRows, (nvmlDevice_t, unsigned int *, unsigned int *, unsigned int *, unsigned int *));
    if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;
    if (!FF_FAULT_POSSIBLE()) return fn(d, corr, unc, pending, failure);
    nvmlReturn_t lost = ff_lost_error("nvmlDeviceGetRemappedRows", d);
    if (lost) return lost;
    nvmlReturn_t result = fn(d, corr, unc, pending, failure);
    struct ff_fault fault;
    const struct ff_xid *xid = ff_device_fault(d, &fault);
    if (result != FF_NVML_SUCCESS || !xid) return result;
    if (xid->nvml_remap == 1) {
        *unc += 1;
        *pending = 1;
    } else if (xid->nvml_remap == 2) {
        *failure = 1;
    }
    return result;
}

/* A retired-pages answer with our page appended: NVML's size contract (count in: capacity; out: pages
 * matching; INSUFFICIENT_SIZE when they do not fit) holds with it. */
static nvmlReturn_t ff_add_retired_page(nvmlReturn_t result, unsigned int capacity, unsigned int *count,
                                        unsigned long long *addresses, unsigned long long *times) {
    if (result != FF_NVML_SUCCESS && result != FF_NVML_ERROR_INSUFFICIENT_SIZE) return result;
    unsigned int n = *count;
    *count = n + 1;
    if (result != FF_NVML_SUCCESS || n >= capacity || !addresses) return FF_NVML_ERROR_INSUFFICIENT_SIZE;
    addresses[n] = FF_RETIRED_PAGE_ADDRESS;
    if (times) times[n] = (unsigned long long)ff_now_ms() / 1000;
    return FF_NVML_SUCCESS;
}

static int ff_retires_page(nvmlDevice_t d, int cause) {
    struct ff_fault fault;
    const struct ff_xid *xid = ff_device_fault(d, &fault);
    return xid && xid->nvml_retire && cause == FF_NVML_RETIREMENT_DOUBLE_BIT;
}

FF_EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t d, int cause, unsigned int *count,
                                                 unsigned long long *addresses) {
    nvmlReturn_t (*fn)(nvmlDevice_t, int, unsigned int *, unsigned long long *) =
        FF_REAL(nvmlDeviceGetRetiredPages, (nvmlDevice_t, int, unsigned int *, unsigned long long *));
    if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;
    if (!FF_FAULT_POSSIBLE()) return fn(d, cause, count, addresses);
    nvmlReturn_t lost = ff_lost_error("nvmlDeviceGetRetiredPages", d);
    if (lost) return lost;
    unsigned int capacity = *count;
    nvmlReturn_t result = fn(d, cause, count, addresses);
    return ff_retires_page(d, cause) ? ff_add_retired_page(result, capacity, count, addresses, NULL) : result;
}

FF_EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages_v2(nvmlDevice_t d, int cause, unsigned int *count,
                                                    unsigned long long *addresses, unsigned long long *times) {
    nvmlReturn_t (*fn)(nvmlDevice_t, int, unsigned int *, unsigned long long *, unsigned long long *) = FF_REAL(
        nvmlDeviceGetRetiredPages_v2, (nvmlDevice_t, int, unsigned int *, unsigned long long *, unsigned long long *));
    if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;
    if (!FF_FAULT_POSSIBLE()) return fn(d, cause, count, addresses, times);
    nvmlReturn_t lost = ff_lost_error("nvmlDeviceGetRetiredPages_v2", d);
    if (lost) return lost;
    unsigned int capacity = *count;
    nvmlReturn_t result = fn(d, cause, count, addresses, times);
    return ff_retires_page(d, cause) ? ff_add_retired_page(result, capacity, count, addresses, times) : result;
}

FF_EXPORT nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(nvmlDevice_t d, int *pending) {
    nvmlReturn_t (*fn)(nvmlDevice_t, int *) = FF_REAL(nvmlDeviceGetRetiredPagesPendingStatus, (nvmlDevice_t, int *));
    if (!fn) return FF_NVML_ERROR_FUNCTION_NOT_FOUND;
    if (!FF_FAULT_POSSIBLE()) return fn(d, pending);
    nvmlReturn_t lost = ff_lost_error("nvmlDeviceGetRetiredPagesPendingStatus", d);
    if (lost) return lost;
    nvmlReturn_t result = fn(d, pending);
    if (result == FF_NVML_SUCCESS && ff_retires_page(d, FF_NVML_RETIREMENT_DOUBLE_BIT)) *pending = FF_NVML_FEATURE_ENABLED;
    return result;
}
