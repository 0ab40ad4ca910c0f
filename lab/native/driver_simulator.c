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
 * Environment:
 *   SIM_INIT_RESULT     what cuInit returns (default 0; 100 = no device, 34 = stub library)
 *   SIM_CALL_RESULT     what every per-call function returns (default 0)
 *   SIM_DEVICES         device count (default 2)
 *   SIM_DRIVER_VERSION  cuDriverGetVersion (default 13000: cudart 13 requires >= 13000)
 *   SIM_LOG             1: one stderr line per call ("[driver-sim] cuMemAlloc_v2"), to prove a call
 *                       reached (or did not reach) the driver
 */
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

#define CALL(name) \
    do {                                  \
        trace(name);                      \
        return env_int("SIM_CALL_RESULT", 0); \
    } while (0)

EXPORT CUresult cuInit(unsigned int flags) {
    (void)flags;
    trace("cuInit");
    int result = env_int("SIM_INIT_RESULT", 0);
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
    *count = env_int("SIM_DEVICES", 2);
    return 0;
}

EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal) {
    trace("cuDeviceGet");
    if (!initialised) return 3;
    if (ordinal < 0 || ordinal >= env_int("SIM_DEVICES", 2)) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *device = ordinal;
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
