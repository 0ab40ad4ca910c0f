/* Runtime API wrappers (libcudart, cuda*).
 *
 * Reached by symbol when the program links the shared cudart (PyTorch does), and through the dlsym
 * hook when it dlopen()s it (ctypes). A static cudart is reached only through the driver wrappers.
 * cudaGetLastError/cudaPeekAtLastError report an injected error like cudart reports a sticky one:
 * while the fault lasts every call, these included, returns it; once it is off, the last injected
 * error is returned (and, by cudaGetLastError, cleared) once.
 */
#include "shim.h"

#define FF_RT_STREAM_VARIANTS(X, name, params, args) \
    X(name, FF_CURRENT, -1, params, args)              \
    X(name##_ptsz, FF_CURRENT, -1, params, args)

#define FF_RUNTIME_GENERATED(X)                                                                                    \
    X(cudaGetDeviceCount, FF_INIT, -1, (int *count), (count))                                                      \
    X(cudaGetDevice, FF_CURRENT, -1, (int *device), (device))                                                      \
    X(cudaGetDeviceProperties, FF_DEVICE, device, (void *prop, int device), (prop, device))                        \
    X(cudaGetDeviceProperties_v2, FF_DEVICE, device, (void *prop, int device), (prop, device))                     \
    X(cudaDeviceSynchronize, FF_CURRENT, -1, (void), ())                                                           \
    X(cudaMalloc, FF_CURRENT, -1, (void **ptr, size_t size), (ptr, size))                                          \
    X(cudaFree, FF_CURRENT, -1, (void *ptr), (ptr))                                                                \
    X(cudaMallocHost, FF_CURRENT, -1, (void **ptr, size_t size), (ptr, size))                                      \
    X(cudaMallocManaged, FF_CURRENT, -1, (void **ptr, size_t size, unsigned int flags), (ptr, size, flags))        \
    FF_RT_STREAM_VARIANTS(X, cudaMallocAsync, (void **ptr, size_t size, cudaStream_t s), (ptr, size, s))          \
    FF_RT_STREAM_VARIANTS(X, cudaFreeAsync, (void *ptr, cudaStream_t s), (ptr, s))                                \
    FF_RT_STREAM_VARIANTS(X, cudaMallocFromPoolAsync, (void **ptr, size_t size, cudaMemPool_t pool, cudaStream_t s), \
                          (ptr, size, pool, s))                                                                    \
    X(cudaMemcpy, FF_CURRENT, -1, (void *dst, const void *src, size_t n, int kind), (dst, src, n, kind))           \
    X(cudaMemcpy_ptds, FF_CURRENT, -1, (void *dst, const void *src, size_t n, int kind), (dst, src, n, kind))      \
    FF_RT_STREAM_VARIANTS(X, cudaMemcpyAsync, (void *dst, const void *src, size_t n, int kind, cudaStream_t s),   \
                          (dst, src, n, kind, s))                                                                  \
    X(cudaMemset, FF_CURRENT, -1, (void *ptr, int value, size_t n), (ptr, value, n))                               \
    X(cudaMemset_ptds, FF_CURRENT, -1, (void *ptr, int value, size_t n), (ptr, value, n))                          \
    FF_RT_STREAM_VARIANTS(X, cudaMemsetAsync, (void *ptr, int value, size_t n, cudaStream_t s), (ptr, value, n, s)) \
    FF_RT_STREAM_VARIANTS(X, cudaLaunchKernel,                                                                     \
                          (const void *func, dim3 grid, dim3 block, void **args, size_t shared, cudaStream_t s),   \
                          (func, grid, block, args, shared, s))                                                    \
    FF_RT_STREAM_VARIANTS(X, cudaLaunchKernelExC, (const void *config, const void *func, void **args),            \
                          (config, func, args))                                                                    \
    FF_RT_STREAM_VARIANTS(X, cudaGraphLaunch, (cudaGraphExec_t exec, cudaStream_t s), (exec, s))                  \
    FF_RT_STREAM_VARIANTS(X, cudaStreamSynchronize, (cudaStream_t s), (s))                                        \
    FF_RT_STREAM_VARIANTS(X, cudaStreamQuery, (cudaStream_t s), (s))                                              \
    X(cudaEventSynchronize, FF_CURRENT, -1, (cudaEvent_t e), (e))                                                  \
    X(cudaEventQuery, FF_CURRENT, -1, (cudaEvent_t e), (e))

#define FF_RUNTIME_SPECIAL(X)                            \
    X(cudaSetDevice, FF_DEVICE, -1, (void), ())           \
    X(cudaGetLastError, FF_CURRENT, -1, (void), ())       \
    X(cudaPeekAtLastError, FF_CURRENT, -1, (void), ())

#define FF_RUNTIME_ALL(X) FF_RUNTIME_GENERATED(X) FF_RUNTIME_SPECIAL(X)

#define FF_INDEX(name, kind, device, params, args) FF_RT_##name,
enum { FF_RUNTIME_ALL(FF_INDEX) FF_RT_COUNT };

#define FF_SLOW_DECLARE(name, kind, device, params, args) static cudaError_t ff_slow_##name params;
FF_RUNTIME_GENERATED(FF_SLOW_DECLARE)
/* Generated wrappers' slots start at their slow path; the hand-written ones' start at NULL. */
#define FF_SLOT(name, kind, device, params, args) [FF_RT_##name] = (void *)ff_slow_##name,
static void *_Atomic ff_runtime_real[FF_RT_COUNT] = {FF_RUNTIME_GENERATED(FF_SLOT)};

#define FF_DECLARE(name, kind, device, params, args) FF_EXPORT cudaError_t name params;
FF_RUNTIME_GENERATED(FF_DECLARE)
FF_EXPORT cudaError_t cudaSetDevice(int device);
FF_EXPORT cudaError_t cudaGetLastError(void);
FF_EXPORT cudaError_t cudaPeekAtLastError(void);

#define FF_ENTRY(name, kind, device, params, args) \
    {#name, (void *)name, &ff_runtime_real[FF_RT_##name], (void *)ff_slow_##name, 0},
#define FF_SPECIAL_ENTRY(name, kind, device, params, args) {#name, (void *)name, &ff_runtime_real[FF_RT_##name], NULL, 0},
const struct ff_entry ff_runtime_entries[] = {FF_RUNTIME_GENERATED(FF_ENTRY) FF_RUNTIME_SPECIAL(FF_SPECIAL_ENTRY)};
const size_t ff_runtime_entry_count = FF_RT_COUNT;

#define FF_REAL(name, type) ((type)ff_real_of(&ff_runtime_entries[FF_RT_##name]))

#define FF_WRAPPER(name, kind, device, params, args)                                                   \
    FF_DEFINE_WRAPPER(cudaError_t, name, kind, device, params, args, &ff_runtime_entries[FF_RT_##name], \
                      FF_CUDA_ERROR_SYMBOL_NOT_FOUND)
FF_RUNTIME_GENERATED(FF_WRAPPER)

FF_EXPORT cudaError_t cudaSetDevice(int device) {
    if (FF_FAULT_POSSIBLE()) {
        int error = ff_fault_error("cudaSetDevice", FF_DEVICE, device);
        if (error) return error;
    }
    cudaError_t (*fn)(int) = FF_REAL(cudaSetDevice, cudaError_t(*)(int));
    if (!fn) return FF_CUDA_ERROR_SYMBOL_NOT_FOUND;
    cudaError_t result = fn(device);
    if (result == 0) ff_tl_device = device; /* per-GPU targeting before a context exists */
    return result;
}

#define FF_ASK_CUDART (-1)

static cudaError_t ff_last_error(const char *api, int clear) {
    if (FF_FAULT_POSSIBLE()) {
        int error = ff_fault_error(api, FF_CURRENT, -1);
        if (error) return error;
    }
    int injected = ff_tl_injected;
    if (FF_UNLIKELY(injected != 0)) {
        if (clear) ff_tl_injected = 0;
        return injected;
    }
    return FF_ASK_CUDART; /* none of ours: ask cudart */
}

FF_EXPORT cudaError_t cudaGetLastError(void) {
    cudaError_t ours = ff_last_error("cudaGetLastError", 1);
    if (ours != FF_ASK_CUDART) return ours;
    cudaError_t (*fn)(void) = FF_REAL(cudaGetLastError, cudaError_t(*)(void));
    return fn ? fn() : FF_CUDA_ERROR_SYMBOL_NOT_FOUND;
}

FF_EXPORT cudaError_t cudaPeekAtLastError(void) {
    cudaError_t ours = ff_last_error("cudaPeekAtLastError", 0);
    if (ours != FF_ASK_CUDART) return ours;
    cudaError_t (*fn)(void) = FF_REAL(cudaPeekAtLastError, cudaError_t(*)(void));
    return fn ? fn() : FF_CUDA_ERROR_SYMBOL_NOT_FOUND;
}
