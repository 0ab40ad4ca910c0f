/* Driver API wrappers (libcuda, cu*).
 *
 * Every function the reference shim intercepted, their _v2/_v3/_v4 versions, the per-thread default
 * stream variants (_ptsz/_ptds, handed out by cuGetProcAddress for CU_GET_PROC_ADDRESS_PER_THREAD_
 * DEFAULT_STREAM), async allocators, launches and graph launches: whatever a failing GPU makes fail.
 * cuGetProcAddress itself is wrapped so that everything cudart fetches through it is wrapped too.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

#include "shim.h"

/* X(name, kind, device argument, parameters, arguments) */
#define FF_STREAM_VARIANTS(X, name, params, args) \
    X(name, FF_CURRENT, -1, params, args)           \
    X(name##_ptsz, FF_CURRENT, -1, params, args)

#define FF_DRIVER_GENERATED(X)                                                                                      \
    X(cuInit, FF_INIT, -1, (unsigned int flags), (flags))                                                           \
    X(cuDeviceGetCount, FF_INIT, -1, (int *count), (count))                                                         \
    X(cuDeviceGet, FF_DEVICE, ordinal, (CUdevice * device, int ordinal), (device, ordinal))                         \
    X(cuDeviceGetAttribute, FF_DEVICE, dev, (int *pi, int attrib, CUdevice dev), (pi, attrib, dev))                 \
    X(cuDeviceGetName, FF_DEVICE, dev, (char *name, int len, CUdevice dev), (name, len, dev))                       \
    X(cuDeviceGetPCIBusId, FF_DEVICE, dev, (char *bus, int len, CUdevice dev), (bus, len, dev))                     \
    X(cuDeviceTotalMem_v2, FF_DEVICE, dev, (size_t * bytes, CUdevice dev), (bytes, dev))                            \
    X(cuDevicePrimaryCtxRetain, FF_DEVICE, dev, (CUcontext * pctx, CUdevice dev), (pctx, dev))                      \
    X(cuCtxCreate, FF_DEVICE, dev, (CUcontext * pctx, unsigned int flags, CUdevice dev), (pctx, flags, dev))        \
    X(cuCtxCreate_v2, FF_DEVICE, dev, (CUcontext * pctx, unsigned int flags, CUdevice dev), (pctx, flags, dev))     \
    X(cuCtxCreate_v3, FF_DEVICE, dev,                                                                               \
      (CUcontext * pctx, void *params, int count, unsigned int flags, CUdevice dev),                                \
      (pctx, params, count, flags, dev))                                                                            \
    X(cuCtxCreate_v4, FF_DEVICE, dev, (CUcontext * pctx, void *params, unsigned int flags, CUdevice dev),           \
      (pctx, params, flags, dev))                                                                                   \
    X(cuCtxGetCurrent, FF_CURRENT, -1, (CUcontext * pctx), (pctx))                                                  \
    X(cuCtxSetCurrent, FF_CURRENT, -1, (CUcontext ctx), (ctx))                                                      \
    X(cuCtxGetDevice, FF_CURRENT, -1, (CUdevice * device), (device))                                                \
    X(cuCtxSynchronize, FF_CURRENT, -1, (void), ())                                                                 \
    X(cuMemGetInfo_v2, FF_CURRENT, -1, (size_t * free_bytes, size_t * total), (free_bytes, total))                  \
    X(cuMemAlloc, FF_CURRENT, -1, (unsigned int *dptr, unsigned int bytes), (dptr, bytes))                          \
    X(cuMemAlloc_v2, FF_CURRENT, -1, (CUdeviceptr * dptr, size_t bytes), (dptr, bytes))                             \
    X(cuMemFree, FF_CURRENT, -1, (unsigned int dptr), (dptr))                                                       \
    X(cuMemFree_v2, FF_CURRENT, -1, (CUdeviceptr dptr), (dptr))                                                     \
    X(cuMemAllocManaged, FF_CURRENT, -1, (CUdeviceptr * dptr, size_t bytes, unsigned int flags), (dptr, bytes, flags)) \
    X(cuMemAllocHost_v2, FF_CURRENT, -1, (void **pp, size_t bytes), (pp, bytes))                                    \
    FF_STREAM_VARIANTS(X, cuMemAllocAsync, (CUdeviceptr * dptr, size_t bytes, CUstream s), (dptr, bytes, s))       \
    FF_STREAM_VARIANTS(X, cuMemFreeAsync, (CUdeviceptr dptr, CUstream s), (dptr, s))                               \
    FF_STREAM_VARIANTS(X, cuMemAllocFromPoolAsync, (CUdeviceptr * dptr, size_t bytes, CUmemoryPool pool, CUstream s), \
                       (dptr, bytes, pool, s))                                                                      \
    X(cuMemcpy, FF_CURRENT, -1, (CUdeviceptr dst, CUdeviceptr src, size_t n), (dst, src, n))                        \
    X(cuMemcpy_ptds, FF_CURRENT, -1, (CUdeviceptr dst, CUdeviceptr src, size_t n), (dst, src, n))                   \
    FF_STREAM_VARIANTS(X, cuMemcpyAsync, (CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream s), (dst, src, n, s)) \
    X(cuMemcpyHtoD, FF_CURRENT, -1, (unsigned int dst, const void *src, unsigned int n), (dst, src, n))             \
    X(cuMemcpyHtoD_v2, FF_CURRENT, -1, (CUdeviceptr dst, const void *src, size_t n), (dst, src, n))                 \
    X(cuMemcpyHtoD_v2_ptds, FF_CURRENT, -1, (CUdeviceptr dst, const void *src, size_t n), (dst, src, n))            \
    X(cuMemcpyDtoH, FF_CURRENT, -1, (void *dst, unsigned int src, unsigned int n), (dst, src, n))                   \
    X(cuMemcpyDtoH_v2, FF_CURRENT, -1, (void *dst, CUdeviceptr src, size_t n), (dst, src, n))                       \
    X(cuMemcpyDtoH_v2_ptds, FF_CURRENT, -1, (void *dst, CUdeviceptr src, size_t n), (dst, src, n))                  \
    X(cuMemcpyDtoD_v2, FF_CURRENT, -1, (CUdeviceptr dst, CUdeviceptr src, size_t n), (dst, src, n))                 \
    X(cuMemcpyDtoD_v2_ptds, FF_CURRENT, -1, (CUdeviceptr dst, CUdeviceptr src, size_t n), (dst, src, n))            \
    X(cuMemcpyHtoDAsync_v2, FF_CURRENT, -1, (CUdeviceptr dst, const void *src, size_t n, CUstream s), (dst, src, n, s)) \
    X(cuMemcpyHtoDAsync_v2_ptsz, FF_CURRENT, -1, (CUdeviceptr dst, const void *src, size_t n, CUstream s),          \
      (dst, src, n, s))                                                                                             \
    X(cuMemcpyDtoHAsync_v2, FF_CURRENT, -1, (void *dst, CUdeviceptr src, size_t n, CUstream s), (dst, src, n, s))   \
    X(cuMemcpyDtoHAsync_v2_ptsz, FF_CURRENT, -1, (void *dst, CUdeviceptr src, size_t n, CUstream s),                \
      (dst, src, n, s))                                                                                             \
    X(cuMemsetD8_v2, FF_CURRENT, -1, (CUdeviceptr dst, unsigned char v, size_t n), (dst, v, n))                     \
    X(cuMemsetD8_v2_ptds, FF_CURRENT, -1, (CUdeviceptr dst, unsigned char v, size_t n), (dst, v, n))                \
    X(cuMemsetD32_v2, FF_CURRENT, -1, (CUdeviceptr dst, unsigned int v, size_t n), (dst, v, n))                     \
    X(cuMemsetD32_v2_ptds, FF_CURRENT, -1, (CUdeviceptr dst, unsigned int v, size_t n), (dst, v, n))                \
    FF_STREAM_VARIANTS(X, cuLaunchKernel,                                                                           \
                       (CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,           \
                        unsigned int by, unsigned int bz, unsigned int shared, CUstream s, void **params,           \
                        void **extra),                                                                              \
                       (f, gx, gy, gz, bx, by, bz, shared, s, params, extra))                                       \
    FF_STREAM_VARIANTS(X, cuLaunchKernelEx, (const void *config, CUfunction f, void **params, void **extra),        \
                       (config, f, params, extra))                                                                  \
    FF_STREAM_VARIANTS(X, cuLaunchCooperativeKernel,                                                                \
                       (CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,           \
                        unsigned int by, unsigned int bz, unsigned int shared, CUstream s, void **params),          \
                       (f, gx, gy, gz, bx, by, bz, shared, s, params))                                              \
    FF_STREAM_VARIANTS(X, cuGraphLaunch, (CUgraphExec exec, CUstream s), (exec, s))                                 \
    X(cuStreamCreate, FF_CURRENT, -1, (CUstream * s, unsigned int flags), (s, flags))                               \
    X(cuStreamCreateWithPriority, FF_CURRENT, -1, (CUstream * s, unsigned int flags, int priority), (s, flags, priority)) \
    FF_STREAM_VARIANTS(X, cuStreamSynchronize, (CUstream s), (s))                                                   \
    FF_STREAM_VARIANTS(X, cuStreamQuery, (CUstream s), (s))                                                         \
    FF_STREAM_VARIANTS(X, cuEventRecord, (CUevent e, CUstream s), (e, s))                                           \
    X(cuEventSynchronize, FF_CURRENT, -1, (CUevent e), (e))                                                         \
    X(cuEventQuery, FF_CURRENT, -1, (CUevent e), (e))                                                               \
    X(cuModuleLoad, FF_CURRENT, -1, (CUmodule * m, const char *path), (m, path))                                    \
    X(cuModuleLoadData, FF_CURRENT, -1, (CUmodule * m, const void *image), (m, image))                              \
    X(cuModuleLoadDataEx, FF_CURRENT, -1,                                                                           \
      (CUmodule * m, const void *image, unsigned int n, void *options, void **values), (m, image, n, options, values)) \
    X(cuModuleGetFunction, FF_CURRENT, -1, (CUfunction * f, CUmodule m, const char *name), (f, m, name))            \
    X(cuLibraryLoadData, FF_CURRENT, -1,                                                                            \
      (CUlibrary * lib, const void *code, void *jit_options, void **jit_values, unsigned int jit_count,            \
       void *lib_options, void **lib_values, unsigned int lib_count),                                               \
      (lib, code, jit_options, jit_values, jit_count, lib_options, lib_values, lib_count))

/* Written by hand below; listed so they get a slot and a table entry like the rest. */
#define FF_DRIVER_SPECIAL(X)                         \
    X(cuGetProcAddress, FF_CURRENT, -1, (void), ())   \
    X(cuGetProcAddress_v2, FF_CURRENT, -1, (void), ())

#define FF_DRIVER_ALL(X) FF_DRIVER_GENERATED(X) FF_DRIVER_SPECIAL(X)

#define FF_INDEX(name, kind, device, params, args) FF_DRV_##name,
enum { FF_DRIVER_ALL(FF_INDEX) FF_DRV_COUNT };

#define FF_SLOW_DECLARE(name, kind, device, params, args) static CUresult ff_slow_##name params;
FF_DRIVER_GENERATED(FF_SLOW_DECLARE)
/* Generated wrappers' slots start at their slow path; the hand-written ones' start at NULL. */
#define FF_SLOT(name, kind, device, params, args) [FF_DRV_##name] = (void *)ff_slow_##name,
static void *_Atomic ff_driver_real[FF_DRV_COUNT] = {FF_DRIVER_GENERATED(FF_SLOT)};

#define FF_DECLARE(name, kind, device, params, args) FF_EXPORT CUresult name params;
FF_DRIVER_GENERATED(FF_DECLARE)
FF_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags);
FF_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags,
                                       int *status);

#define FF_ENTRY(name, kind, device, params, args) \
    {#name, (void *)name, &ff_driver_real[FF_DRV_##name], (void *)ff_slow_##name, 1},
#define FF_SPECIAL_ENTRY(name, kind, device, params, args) {#name, (void *)name, &ff_driver_real[FF_DRV_##name], NULL, 1},
const struct ff_entry ff_driver_entries[] = {FF_DRIVER_GENERATED(FF_ENTRY) FF_DRIVER_SPECIAL(FF_SPECIAL_ENTRY)};
const size_t ff_driver_entry_count = FF_DRV_COUNT;

#define FF_REAL(name, type) ((type)ff_real_of(&ff_driver_entries[FF_DRV_##name]))

#define FF_WRAPPER(name, kind, device, params, args) \
    FF_DEFINE_WRAPPER(CUresult, name, kind, device, params, args, &ff_driver_entries[FF_DRV_##name], FF_CUDA_ERROR_NOT_FOUND)
FF_DRIVER_GENERATED(FF_WRAPPER)

/* True when `name` is `base` or one of its versioned / per-thread-stream variants
 * ("cuMemAlloc" → cuMemAlloc_v2, "cuLaunchKernel" → cuLaunchKernel_ptsz, …). */
static int ff_is_variant(const char *name, const char *base) {
    size_t n = strlen(base);
    if (strncmp(name, base, n) != 0) return 0;
    const char *suffix = name + n;
    return *suffix == '\0' || (suffix[0] == '_' && (suffix[1] == 'v' || suffix[1] == 'p'));
}

/* cuGetProcAddress answers a base name ("cuMemAlloc") with the variant for the caller's CUDA version
 * and stream mode. Which variant it chose is read back from the address: dladdr() names the exported
 * symbol; for an alias it may name another one, so then each variant of the base name is compared. */
void *ff_adopt_proc_address(const char *symbol, void *pfn) {
    Dl_info info;
    if (!dladdr(pfn, &info)) return pfn;
    const struct ff_entry *entry = info.dli_sname ? ff_find_entry(info.dli_sname) : NULL;
    if (entry) return ff_adopt(entry, pfn);
    if (!info.dli_fname || !symbol) return pfn;
    void *handle = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    if (!handle) return pfn;
    ff_dlsym_fn real_dlsym = ff_load_real_dlsym();
    void *result = pfn;
    for (size_t i = 0; i < ff_driver_entry_count; i++) {
        const struct ff_entry *candidate = &ff_driver_entries[i];
        if (ff_is_variant(candidate->name, symbol) && real_dlsym(handle, candidate->name) == pfn) {
            result = ff_adopt(candidate, pfn);
            break;
        }
    }
    dlclose(handle);
    return result;
}

/* Lookups are never faulted: finding an entry point does not touch the GPU. */
FF_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags) {
    CUresult (*fn)(const char *, void **, int, cuuint64_t) =
        FF_REAL(cuGetProcAddress, CUresult(*)(const char *, void **, int, cuuint64_t));
    if (!fn) return FF_CUDA_ERROR_NOT_FOUND;
    CUresult result = fn(symbol, pfn, cuda_version, flags);
    if (result == 0 && pfn && *pfn) *pfn = ff_adopt_proc_address(symbol, *pfn);
    return result;
}

FF_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags,
                                       int *status) {
    CUresult (*fn)(const char *, void **, int, cuuint64_t, int *) =
        FF_REAL(cuGetProcAddress_v2, CUresult(*)(const char *, void **, int, cuuint64_t, int *));
    if (!fn) return FF_CUDA_ERROR_NOT_FOUND;
    CUresult result = fn(symbol, pfn, cuda_version, flags, status);
    if (result == 0 && pfn && *pfn) *pfn = ff_adopt_proc_address(symbol, *pfn);
    return result;
}

int ff_driver_device_bus(int device, char *bus, int len) {
    CUresult (*fn)(char *, int, CUdevice) = FF_REAL(cuDeviceGetPCIBusId, CUresult(*)(char *, int, CUdevice));
    return fn && fn(bus, len, device) == 0 ? 0 : -1;
}

int ff_driver_current_device(int *device) {
    CUresult (*fn)(CUdevice *) = FF_REAL(cuCtxGetDevice, CUresult(*)(CUdevice *));
    return fn && fn(device) == 0 ? 0 : -1;
}
