/* DRIVER SIMULATOR — a stand-in for the NVIDIA user-space driver (libcuda.so.1), for tests and the lab only.
 *
 * No GPU or driver can run here. This library copies the real driver's contract where the shim
 * depends on it: cudart dlopen()s it and fetches entry points through cuGetProcAddress_v2 (by base
 * name + CUDA version, _ptsz variants for CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, and
 * "cuGetProcAddress" itself: v1 below 12000, v2 from 12000), then calls cuGetExportTable,
 * cuDriverGetVersion and cuInit. It cannot run a real cudart to success (cudart needs the driver's
 * private export tables), so it simulates initialisation failures and answers the driver API.
 *
 * Built with -Wl,-Bsymbolic so its table holds its own functions, never the shim's same-named ones.
 *
 * Devices, as the real driver presents them: the host's GPUs (each with its device minor and PCI bus
 * id), of which the process sees those CUDA_VISIBLE_DEVICES lists, renumbered from 0 in that order (a
 * pod holding host GPU 3 sees it as device 0). cuDeviceGetPCIBusId answers the host GPU's bus id, the
 * same one /proc/driver/nvidia/gpus/<bus id>/ and NVML report for it.
 *
 * Environment:
 *   SIM_INIT_RESULT     what cuInit returns (default 0, or 100 = no device when no GPU is visible;
 *                       34 = stub library)
 *   SIM_CALL_RESULT     what every per-call function returns (default 0)
 *   SIM_PROC_ROOT       a /proc tree: the host's GPUs are those of SIM_PROC_ROOT/driver/nvidia/gpus/
 *                       (directory = bus id, `Device Minor:` in its information file), as the lab
 *                       lays out each node's driver tree
 *   SIM_DEVICES         otherwise, the host's GPU count (default 2), minors 0.., with the NVML
 *                       simulator's bus ids (00000000:18:00.0, then +0x23 per GPU)
 *   CUDA_VISIBLE_DEVICES  comma-separated host GPU indices the process sees, in order; as the real
 *                       driver, the list ends at the first entry that is not a valid, new index
 *   SIM_DRIVER_VERSION  cuDriverGetVersion (default 13000: cudart 13 requires >= 13000)
 *   SIM_LOG             1: one stderr line per call ("[driver-sim] cuMemAlloc_v2"), to prove a call
 *                       reached (or did not reach) the driver
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;

#define EXPORT __attribute__((visibility("default")))

static int env_int(const char *name, int fallback) {
    const char *value = getenv(name);
    return value && *value ? atoi(value) : fallback;
}

static void trace(const char *name) {
    if (env_int("SIM_LOG", 0)) fprintf(stderr, "[driver-sim] %s\n", name);
}

static int initialised;
static __thread int current_device = -1;

/* ---- the host's GPUs and the process's view of them ---- */

#define MAX_GPUS 64
struct gpu {
    int minor;
    unsigned int domain, bus, device, function;
};
static struct {
    struct gpu host[MAX_GPUS]; /* by device minor */
    int host_count;
    int visible[MAX_GPUS]; /* CUDA ordinal → index into host */
    int visible_count;
} topology;
static pthread_once_t topology_once = PTHREAD_ONCE_INIT;

/* One GPU directory of the driver's /proc tree: its name is the bus id, its information file has
 * the minor. */
static int read_proc_gpu(const char *gpus_dir, const char *name, struct gpu *out) {
    if (sscanf(name, "%x:%x:%x.%x", &out->domain, &out->bus, &out->device, &out->function) != 4) return 0;
    char path[4096 + 512];
    snprintf(path, sizeof path, "%s/%s/information", gpus_dir, name);
    FILE *file = fopen(path, "r");
    if (!file) return 0;
    char line[256];
    int found = 0;
    while (!found && fgets(line, sizeof line, file)) found = sscanf(line, "Device Minor: %d", &out->minor) == 1;
    fclose(file);
    return found;
}

static int by_minor(const void *a, const void *b) { return ((const struct gpu *)a)->minor - ((const struct gpu *)b)->minor; }

static void load_host_gpus(void) {
    const char *root = getenv("SIM_PROC_ROOT");
    if (root && *root) {
        char gpus_dir[4096];
        snprintf(gpus_dir, sizeof gpus_dir, "%s/driver/nvidia/gpus", root);
        DIR *dir = opendir(gpus_dir);
        for (struct dirent *entry; dir && (entry = readdir(dir)) && topology.host_count < MAX_GPUS;)
            if (entry->d_name[0] != '.' && read_proc_gpu(gpus_dir, entry->d_name, &topology.host[topology.host_count]))
                topology.host_count++;
        if (dir) closedir(dir);
        qsort(topology.host, (size_t)topology.host_count, sizeof topology.host[0], by_minor);
        return;
    }
    int count = env_int("SIM_DEVICES", 2);
    topology.host_count = count < 0 ? 0 : count > MAX_GPUS ? MAX_GPUS : count;
    for (int i = 0; i < topology.host_count; i++)
        topology.host[i] = (struct gpu){.minor = i, .bus = 0x18 + 0x23 * (unsigned)i}; /* nvml_simulator.c's */
}

static void load_visible(void) {
    const char *list = getenv("CUDA_VISIBLE_DEVICES");
    if (!list) {
        for (int i = 0; i < topology.host_count; i++) topology.visible[topology.visible_count++] = i;
        return;
    }
    int seen[MAX_GPUS] = {0};
    for (const char *p = list; *p && topology.visible_count < MAX_GPUS;) {
        char *end;
        long index = strtol(p, &end, 10);
        if (end == p || (*end && *end != ',') || index < 0 || index >= topology.host_count || seen[index]) break;
        seen[index] = 1;
        topology.visible[topology.visible_count++] = (int)index;
        p = *end ? end + 1 : end;
    }
}

static void load_topology(void) {
    load_host_gpus();
    load_visible();
}

static const struct gpu *visible_gpu(int ordinal) {
    pthread_once(&topology_once, load_topology);
    return ordinal >= 0 && ordinal < topology.visible_count ? &topology.host[topology.visible[ordinal]] : NULL;
}

static int visible_count(void) {
    pthread_once(&topology_once, load_topology);
    return topology.visible_count;
}

#define CALL(name) \
    do {                                  \
        trace(name);                      \
        return env_int("SIM_CALL_RESULT", 0); \
    } while (0)

EXPORT CUresult cuInit(unsigned int flags) {
    (void)flags;
    trace("cuInit");
    int result = env_int("SIM_INIT_RESULT", visible_count() ? 0 : 100 /* CUDA_ERROR_NO_DEVICE */);
    initialised = result == 0;
    return result;
}

EXPORT CUresult cuDriverGetVersion(int *version) {
    trace("cuDriverGetVersion");
    *version = env_int("SIM_DRIVER_VERSION", 13000);
    return 0;
}

EXPORT CUresult cuGetExportTable(const void **table, const void *id) {
    (void)table, (void)id;
    trace("cuGetExportTable");
    return 500; /* CUDA_ERROR_NOT_FOUND: no private tables here */
}

EXPORT CUresult cuDeviceGetCount(int *count) {
    trace("cuDeviceGetCount");
    if (!initialised) return 3; /* CUDA_ERROR_NOT_INITIALIZED */
    *count = visible_count();
    return 0;
}

EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    trace("cuDeviceGet");
    if (!initialised) return 3;
    if (!visible_gpu(ordinal)) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *device = ordinal;
    return 0;
}

EXPORT CUresult cuDeviceGetPCIBusId(char *bus_id, int len, CUdevice device) {
    trace("cuDeviceGetPCIBusId");
    if (!initialised) return 3;
    const struct gpu *gpu = visible_gpu(device);
    if (!gpu) return 101;
    if (!bus_id || len < 13) return 1; /* CUDA_ERROR_INVALID_VALUE: "dddd:bb:dd.f" and its NUL */
    snprintf(bus_id, (size_t)len, "%04X:%02X:%02X.%X", gpu->domain, gpu->bus, gpu->device, gpu->function);
    return 0;
}

EXPORT CUresult cuCtxCreate_v2(void **ctx, unsigned int flags, CUdevice device) {
    (void)flags;
    trace("cuCtxCreate_v2");
    if (!initialised) return 3;
    current_device = device;
    *ctx = (void *)(uintptr_t)(0x1000 + device);
    return 0;
}

EXPORT CUresult cuCtxGetCurrent(void **ctx) {
    /* Not traced: the benchmark calls it in a tight loop. */
    *ctx = current_device < 0 ? NULL : (void *)(uintptr_t)(0x1000 + current_device);
    return 0;
}

EXPORT CUresult cuCtxGetDevice(CUdevice *device) {
    trace("cuCtxGetDevice");
    if (current_device < 0) return 201; /* CUDA_ERROR_INVALID_CONTEXT */
    *device = current_device;
    return 0;
}

EXPORT CUresult cuCtxSynchronize(void) { CALL("cuCtxSynchronize"); }

EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *ptr, size_t bytes) {
    (void)bytes;
    *ptr = 0xdead0000ull;
    CALL("cuMemAlloc_v2");
}

EXPORT CUresult cuMemFree_v2(CUdeviceptr ptr) {
    (void)ptr;
    CALL("cuMemFree_v2");
}

EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
    (void)dst, (void)src, (void)n;
    CALL("cuMemcpyHtoD_v2");
}

EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dst, const void *src, size_t n) {
    (void)dst, (void)src, (void)n;
    CALL("cuMemcpyHtoD_v2_ptds");
}

#define LAUNCH_PARAMS                                                                                       \
    void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared, \
        void *stream, void **params, void **extra
#define UNUSED_LAUNCH (void)f, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)stream, (void)params, (void)extra

EXPORT CUresult cuLaunchKernel(LAUNCH_PARAMS) {
    UNUSED_LAUNCH;
    CALL("cuLaunchKernel");
}

EXPORT CUresult cuLaunchKernel_ptsz(LAUNCH_PARAMS) {
    UNUSED_LAUNCH;
    CALL("cuLaunchKernel_ptsz");
}

EXPORT CUresult cuStreamSynchronize(void *stream) {
    (void)stream;
    CALL("cuStreamSynchronize");
}

EXPORT CUresult cuStreamSynchronize_ptsz(void *stream) {
    (void)stream;
    CALL("cuStreamSynchronize_ptsz");
}

EXPORT CUresult cuGetErrorName(CUresult error, const char **name) {
    (void)error;
    *name = "CUDA_ERROR_SIMULATED";
    return 0;
}

EXPORT CUresult cuGetErrorString(CUresult error, const char **text) {
    (void)error;
    *text = "simulated driver error";
    return 0;
}

EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags);
EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags, int *status);

/* base name → default variant, per-thread-stream variant (or NULL: same as default) */
static const struct {
    const char *base;
    void *fn;
    void *per_thread;
} table[] = {
    {"cuInit", (void *)cuInit, NULL},
    {"cuDriverGetVersion", (void *)cuDriverGetVersion, NULL},
    {"cuGetExportTable", (void *)cuGetExportTable, NULL},
    {"cuDeviceGetCount", (void *)cuDeviceGetCount, NULL},
    {"cuDeviceGet", (void *)cuDeviceGet, NULL},
    {"cuDeviceGetPCIBusId", (void *)cuDeviceGetPCIBusId, NULL},
    {"cuCtxCreate", (void *)cuCtxCreate_v2, NULL},
    {"cuCtxGetCurrent", (void *)cuCtxGetCurrent, NULL},
    {"cuCtxGetDevice", (void *)cuCtxGetDevice, NULL},
    {"cuCtxSynchronize", (void *)cuCtxSynchronize, NULL},
    {"cuMemAlloc", (void *)cuMemAlloc_v2, NULL},
    {"cuMemFree", (void *)cuMemFree_v2, NULL},
    {"cuMemcpyHtoD", (void *)cuMemcpyHtoD_v2, (void *)cuMemcpyHtoD_v2_ptds},
    {"cuLaunchKernel", (void *)cuLaunchKernel, (void *)cuLaunchKernel_ptsz},
    {"cuStreamSynchronize", (void *)cuStreamSynchronize, (void *)cuStreamSynchronize_ptsz},
    {"cuGetErrorName", (void *)cuGetErrorName, NULL},
    {"cuGetErrorString", (void *)cuGetErrorString, NULL},
};

static CUresult lookup(const char *symbol, void **pfn, int version, unsigned long long flags) {
    if (strcmp(symbol, "cuGetProcAddress") == 0) {
        *pfn = version >= 12000 ? (void *)cuGetProcAddress_v2 : (void *)cuGetProcAddress;
        return 0;
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(symbol, table[i].base) == 0) {
            *pfn = (flags & 2) && table[i].per_thread ? table[i].per_thread : table[i].fn;
            return 0;
        }
    }
    *pfn = NULL;
    return 500; /* CUDA_ERROR_NOT_FOUND */
}

EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags) {
    return lookup(symbol, pfn, version, flags);
}

EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version, unsigned long long flags,
                                    int *status) {
    CUresult result = lookup(symbol, pfn, version, flags);
    if (status) *status = result == 0 ? 0 : 1; /* CU_GET_PROC_ADDRESS_SUCCESS / _SYMBOL_NOT_FOUND */
    return result;
}
