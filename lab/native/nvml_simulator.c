/* NVML SIMULATOR — a stand-in for the NVIDIA management library (libnvidia-ml.so.1), for tests and
 * the lab only.
 *
 * No GPU or driver can run here. This library copies the real library's contract where NVML consumers
 * and the NVML interposer depend on it: init/shutdown, device enumeration and handles (by index, UUID
 * and PCI bus id), identity queries, event sets (register, wait with a timeout, free), and the ECC
 * state queries (total ECC errors, remapped rows on Ampere and later, retired pages before Ampere).
 * Healthy devices raise no events: a wait lasts its timeout and returns NVML_ERROR_TIMEOUT, as on a
 * real idle GPU. Calls before nvmlInit return NVML_ERROR_UNINITIALIZED.
 *
 * Built with -Wl,-Bsymbolic so its own calls stay inside it, never reaching the preloaded interposer.
 *
 * Environment:
 *   SIM_NVML_DEVICES  device count (default 2)
 *   SIM_NVML_DRIVER_TREE  a driver /proc tree (".../driver/nvidia/gpus", what the lab's GPU nodes have):
 *                     the devices are its GPUs, as the real library gets them from the driver: one per
 *                     <bus id>/information, in bus-id order, with its "GPU UUID", its bus id and its
 *                     "Device Minor" (SIM_NVML_DEVICES is then ignored)
 *   SIM_NVML_ARCH     ampere (default: row remapping; retired pages NOT_SUPPORTED) or volta (page
 *                     retirement; remapped rows NOT_SUPPORTED)
 *   SIM_NVML_XID      "XID:INDEX": the simulated driver itself reports this XID on device INDEX, once
 *                     per event set, to show that real events pass through the interposer unchanged
 *   SIM_NVML_LOG      1: one stderr line per call ("[nvml-sim] nvmlDeviceGetUUID")
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EXPORT __attribute__((visibility("default")))

typedef int nvmlReturn_t;

enum {
    SUCCESS = 0,
    ERROR_UNINITIALIZED = 1,
    ERROR_INVALID_ARGUMENT = 2,
    ERROR_NOT_SUPPORTED = 3,
    ERROR_NOT_FOUND = 6,
    ERROR_INSUFFICIENT_SIZE = 7,
    ERROR_TIMEOUT = 10,
};

#define EVENT_SINGLE_BIT_ECC 0x1ull
#define EVENT_DOUBLE_BIT_ECC 0x2ull
#define EVENT_PSTATE 0x4ull
#define EVENT_XID_CRITICAL 0x8ull
#define EVENT_CLOCK 0x10ull
#define MAX_DEVICES 8

struct device {
    unsigned int index;
    unsigned int minor;
    char uuid[96];
    char bus_id[32];
    unsigned int bus;
};

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    struct device *device;
    unsigned long long eventType, eventData;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

struct event_set {
    unsigned long long registered[MAX_DEVICES];
    int sim_xid_delivered;
};

static struct device devices[MAX_DEVICES];
static int initialised;

static int env_int(const char *name, int fallback) {
    const char *value = getenv(name);
    return value && *value ? atoi(value) : fallback;
}

/* Read once: the benchmark calls a query in a tight loop, and a getenv per call would be most of it. */
static int log_calls = -1;

static void trace(const char *name) {
    if (log_calls < 0) log_calls = env_int("SIM_NVML_LOG", 0);
    if (log_calls) fprintf(stderr, "[nvml-sim] %s\n", name);
}

static unsigned int devices_present; /* SIM_NVML_DEVICES, read at nvmlInit */

static unsigned int device_count(void) { return devices_present; }

static int ampere(void) {
    const char *arch = getenv("SIM_NVML_ARCH");
    return !arch || strcmp(arch, "volta") != 0;
}

static struct device *valid(struct device *d) {
    for (unsigned int i = 0; i < device_count(); i++)
        if (d == &devices[i]) return d;
    return NULL;
}

#define REQUIRE_INIT(name)                           \
    do {                                             \
        trace(name);                                 \
        if (!initialised) return ERROR_UNINITIALIZED; \
    } while (0)

#define REQUIRE_DEVICE(name, d)                         \
    do {                                                \
        REQUIRE_INIT(name);                             \
        if (!valid(d)) return ERROR_INVALID_ARGUMENT;   \
    } while (0)

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static int is_bus_dir(const struct dirent *entry) { return entry->d_name[0] != '.'; }

/* One device from <tree>/<bus id>/information: 1 when it names a GPU UUID. The driver writes the
 * directory name lower-case ("00000000:17:00.0"); NVML answers upper-case hex, as the real one does. */
static int read_information(const char *tree, const char *bus_dir, struct device *d) {
    char path[512], line[256];
    snprintf(path, sizeof path, "%s/%s/information", tree, bus_dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    unsigned int domain, bus, slot, function;
    if (sscanf(bus_dir, "%x:%x:%x.%x", &domain, &bus, &slot, &function) != 4) {
        fclose(f);
        return 0;
    }
    d->bus = bus;
    snprintf(d->bus_id, sizeof d->bus_id, "%08X:%02X:%02X.%X", domain, bus, slot, function);
    d->uuid[0] = '\0';
    while (fgets(line, sizeof line, f)) {
        char *value = strchr(line, ':');
        if (!value) continue;
        *value++ = '\0';
        value += strspn(value, " \t");
        value[strcspn(value, " \t\r\n")] = '\0';
        if (strcmp(line, "GPU UUID") == 0) snprintf(d->uuid, sizeof d->uuid, "%s", value);
        if (strcmp(line, "Device Minor") == 0) d->minor = (unsigned int)atoi(value);
    }
    fclose(f);
    return d->uuid[0] != '\0';
}

/* The driver tree's GPUs (bus-id order is NVML's index order); the count found. */
static unsigned int devices_from_tree(const char *tree) {
    struct dirent **entries;
    int n = scandir(tree, &entries, is_bus_dir, by_name);
    if (n < 0) return 0;
    unsigned int found = 0;
    for (int i = 0; i < n; i++) {
        if (found < MAX_DEVICES && read_information(tree, entries[i]->d_name, &devices[found])) {
            devices[found].index = found;
            found++;
        }
        free(entries[i]);
    }
    free(entries);
    return found;
}

EXPORT nvmlReturn_t nvmlInit_v2(void) {
    trace("nvmlInit_v2");
    for (unsigned int i = 0; i < MAX_DEVICES; i++) {
        devices[i].index = devices[i].minor = i;
        devices[i].bus = 0x18 + 0x23 * i; /* spread like a real board's slots */
        snprintf(devices[i].uuid, sizeof devices[i].uuid, "GPU-5a1de0c4-0000-4000-8000-%012x", 0xfa017u + i);
        snprintf(devices[i].bus_id, sizeof devices[i].bus_id, "00000000:%02X:00.0", devices[i].bus);
    }
    const char *tree = getenv("SIM_NVML_DRIVER_TREE");
    if (tree && *tree) {
        devices_present = devices_from_tree(tree);
    } else {
        int n = env_int("SIM_NVML_DEVICES", 2);
        devices_present = n < 0 ? 0 : n > MAX_DEVICES ? MAX_DEVICES : (unsigned int)n;
    }
    initialised = 1;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlInit(void) { return nvmlInit_v2(); }
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

EXPORT nvmlReturn_t nvmlShutdown(void) {
    trace("nvmlShutdown");
    initialised = 0;
    return SUCCESS;
}

EXPORT const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case SUCCESS: return "Success";
    case ERROR_UNINITIALIZED: return "Uninitialized";
    case ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case ERROR_NOT_SUPPORTED: return "Not Supported";
    case ERROR_NOT_FOUND: return "Not Found";
    case ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case ERROR_TIMEOUT: return "Timeout";
    case 15: return "GPU is lost";
    default: return "Unknown Error";
    }
}

EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    REQUIRE_INIT("nvmlSystemGetDriverVersion");
    snprintf(version, length, "580.95.05");
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    trace("nvmlSystemGetNVMLVersion");
    snprintf(version, length, "13.580.95.05");
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    REQUIRE_INIT("nvmlSystemGetCudaDriverVersion_v2");
    *version = 13000;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    REQUIRE_INIT("nvmlDeviceGetCount_v2");
    *count = device_count();
    return SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) { return nvmlDeviceGetCount_v2(count); }

EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, struct device **d) {
    REQUIRE_INIT("nvmlDeviceGetHandleByIndex_v2");
    if (index >= device_count()) return ERROR_INVALID_ARGUMENT;
    *d = &devices[index];
    return SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, struct device **d) {
    return nvmlDeviceGetHandleByIndex_v2(index, d);
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, struct device **d) {
    REQUIRE_INIT("nvmlDeviceGetHandleByUUID");
    for (unsigned int i = 0; i < device_count(); i++)
        if (strcmp(devices[i].uuid, uuid) == 0) {
            *d = &devices[i];
            return SUCCESS;
        }
    return ERROR_NOT_FOUND;
}

EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, struct device **d) {
    REQUIRE_INIT("nvmlDeviceGetHandleByPciBusId_v2");
    for (unsigned int i = 0; i < device_count(); i++)
        if (strcasecmp(devices[i].bus_id, bus_id) == 0 || strcasecmp(devices[i].bus_id + 4, bus_id) == 0) {
            *d = &devices[i];
            return SUCCESS;
        }
    return ERROR_NOT_FOUND;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId(const char *bus_id, struct device **d) {
    return nvmlDeviceGetHandleByPciBusId_v2(bus_id, d);
}

static nvmlReturn_t copy_string(const char *value, char *out, unsigned int length) {
    if (strlen(value) + 1 > length) return ERROR_INSUFFICIENT_SIZE;
    memcpy(out, value, strlen(value) + 1);
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetUUID(struct device *d, char *uuid, unsigned int length) {
    REQUIRE_DEVICE("nvmlDeviceGetUUID", d);
    return copy_string(d->uuid, uuid, length);
}

EXPORT nvmlReturn_t nvmlDeviceGetName(struct device *d, char *name, unsigned int length) {
    REQUIRE_DEVICE("nvmlDeviceGetName", d);
    return copy_string(ampere() ? "NVIDIA H100 80GB HBM3 (simulated)" : "Tesla V100-SXM2-32GB (simulated)", name, length);
}

EXPORT nvmlReturn_t nvmlDeviceGetIndex(struct device *d, unsigned int *index) {
    REQUIRE_DEVICE("nvmlDeviceGetIndex", d);
    *index = d->index;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMinorNumber(struct device *d, unsigned int *minor) {
    REQUIRE_DEVICE("nvmlDeviceGetMinorNumber", d);
    *minor = d->minor;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(struct device *d, nvmlPciInfo_t *pci) {
    REQUIRE_DEVICE("nvmlDeviceGetPciInfo_v3", d);
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0", d->bus);
    snprintf(pci->busId, sizeof pci->busId, "%s", d->bus_id);
    pci->bus = d->bus;
    pci->pciDeviceId = ampere() ? 0x233010de : 0x1db510de;
    return SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v2(struct device *d, nvmlPciInfo_t *pci) { return nvmlDeviceGetPciInfo_v3(d, pci); }

EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(struct device *d, nvmlMemory_t *memory) {
    REQUIRE_DEVICE("nvmlDeviceGetMemoryInfo", d);
    memory->total = 80ull << 30;
    memory->used = 1ull << 30;
    memory->free = memory->total - memory->used;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetTemperature(struct device *d, int sensor, unsigned int *temp) {
    REQUIRE_DEVICE("nvmlDeviceGetTemperature", d);
    if (sensor != 0) return ERROR_INVALID_ARGUMENT;
    *temp = 41 + d->index;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetMigMode(struct device *d, unsigned int *current, unsigned int *pending) {
    REQUIRE_DEVICE("nvmlDeviceGetMigMode", d);
    if (!ampere()) return ERROR_NOT_SUPPORTED;
    *current = *pending = 0;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetEccMode(struct device *d, int *current, int *pending) {
    REQUIRE_DEVICE("nvmlDeviceGetEccMode", d);
    *current = *pending = 1;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetSupportedEventTypes(struct device *d, unsigned long long *types) {
    REQUIRE_DEVICE("nvmlDeviceGetSupportedEventTypes", d);
    *types = EVENT_SINGLE_BIT_ECC | EVENT_DOUBLE_BIT_ECC | EVENT_PSTATE | EVENT_XID_CRITICAL | EVENT_CLOCK;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetCreate(struct event_set **set) {
    REQUIRE_INIT("nvmlEventSetCreate");
    *set = calloc(1, sizeof **set);
    return *set ? SUCCESS : 999;
}

EXPORT nvmlReturn_t nvmlDeviceRegisterEvents(struct device *d, unsigned long long types, struct event_set *set) {
    REQUIRE_DEVICE("nvmlDeviceRegisterEvents", d);
    unsigned long long supported;
    nvmlDeviceGetSupportedEventTypes(d, &supported);
    if (!set || (types & ~supported)) return types & ~supported ? ERROR_NOT_SUPPORTED : ERROR_INVALID_ARGUMENT;
    set->registered[d->index] |= types;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlEventSetWait_v2(struct event_set *set, nvmlEventData_t *data, unsigned int timeout_ms) {
    REQUIRE_INIT("nvmlEventSetWait_v2");
    if (!set || !data) return ERROR_INVALID_ARGUMENT;
    const char *sim = getenv("SIM_NVML_XID");
    unsigned int xid, index;
    if (!set->sim_xid_delivered && sim && sscanf(sim, "%u:%u", &xid, &index) == 2 && index < device_count() &&
        (set->registered[index] & EVENT_XID_CRITICAL)) {
        set->sim_xid_delivered = 1;
        *data = (nvmlEventData_t){&devices[index], EVENT_XID_CRITICAL, xid, 0xFFFFFFFFu, 0xFFFFFFFFu};
        return SUCCESS;
    }
    /* No event: the real call blocks for the whole timeout. */
    struct timespec wait = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    while (nanosleep(&wait, &wait) != 0) {
    }
    return ERROR_TIMEOUT;
}
EXPORT nvmlReturn_t nvmlEventSetWait(struct event_set *set, nvmlEventData_t *data, unsigned int timeout_ms) {
    return nvmlEventSetWait_v2(set, data, timeout_ms);
}

EXPORT nvmlReturn_t nvmlEventSetFree(struct event_set *set) {
    REQUIRE_INIT("nvmlEventSetFree");
    free(set);
    return SUCCESS;
}

/* A healthy device: no ECC errors, no remapped rows, no retired pages. */
EXPORT nvmlReturn_t nvmlDeviceGetTotalEccErrors(struct device *d, int type, int counter, unsigned long long *count) {
    REQUIRE_DEVICE("nvmlDeviceGetTotalEccErrors", d);
    if (type < 0 || type > 1 || counter < 0 || counter > 1) return ERROR_INVALID_ARGUMENT;
    *count = 0;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRemappedRows(struct device *d, unsigned int *corr, unsigned int *unc,
                                              unsigned int *pending, unsigned int *failure) {
    REQUIRE_DEVICE("nvmlDeviceGetRemappedRows", d);
    if (!ampere()) return ERROR_NOT_SUPPORTED;
    *corr = *unc = *pending = *failure = 0;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages(struct device *d, int cause, unsigned int *count,
                                              unsigned long long *addresses) {
    REQUIRE_DEVICE("nvmlDeviceGetRetiredPages", d);
    (void)addresses;
    if (ampere()) return ERROR_NOT_SUPPORTED;
    if (cause < 0 || cause > 1) return ERROR_INVALID_ARGUMENT;
    *count = 0;
    return SUCCESS;
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPages_v2(struct device *d, int cause, unsigned int *count,
                                                 unsigned long long *addresses, unsigned long long *times) {
    (void)times;
    return nvmlDeviceGetRetiredPages(d, cause, count, addresses);
}

EXPORT nvmlReturn_t nvmlDeviceGetRetiredPagesPendingStatus(struct device *d, int *pending) {
    REQUIRE_DEVICE("nvmlDeviceGetRetiredPagesPendingStatus", d);
    if (ampere()) return ERROR_NOT_SUPPORTED;
    *pending = 0;
    return SUCCESS;
}
