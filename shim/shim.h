/* Internal interface between the shim's modules.
 *
 *   control.c      configuration (env), the mapped node toggle, triggers and hangs (shared with the
 *                  NVML library, see control.h)
 *   interpose.c    dlsym() hook, resolution of real functions (shared too)
 *   fault_cuda.c   the CUDA fault decision: which error a call returns, or whether it blocks
 *   api_driver.c   driver API wrappers (cu*), reached by symbol, dlsym and cuGetProcAddress (whose
 *                  pointers it swaps for the wrappers)
 *   api_runtime.c  runtime API wrappers (cuda*), reached by symbol and dlsym
 *
 * The per-call path of every wrapper is FF_FAULT_POSSIBLE(): one load of a pointer and one of the
 * byte it points at ('0' = pass through). Everything else happens only while a fault may be active.
 */
#ifndef FAULTFLOW_SHIM_H
#define FAULTFLOW_SHIM_H

#include "control.h"
#include "cuda_types.h"

/* What a call's failure depends on: INIT calls (cuInit, device count) fail with the XID's init error
 * and are spared by per-GPU targeting; DEVICE calls name a device ordinal in an argument; CURRENT calls
 * act on the calling thread's current device. */
enum ff_kind { FF_INIT, FF_DEVICE, FF_CURRENT };

extern __thread int ff_tl_injected __attribute__((tls_model("initial-exec")));
extern __thread int ff_tl_device __attribute__((tls_model("initial-exec")));
int ff_fault_error(const char *api, enum ff_kind kind, int device);

/* interpose.c */
void *ff_adopt_proc_address(const char *symbol, void *pfn);

/* api_driver.c: the real driver's PCI bus id of a device (cuDeviceGetPCIBusId), 0 on success. */
int ff_driver_device_bus(int device, char *bus, int len);

/* api_driver.c / api_runtime.c */
extern const struct ff_entry ff_driver_entries[];
extern const size_t ff_driver_entry_count;
extern const struct ff_entry ff_runtime_entries[];
extern const size_t ff_runtime_entry_count;

/* Defines the exported wrapper `name` and its cold slow path. The exported function only reads the
 * hot byte and the real function's address and jumps; the slow path (first call, or a fault that may be
 * active) is a separate function, so the per-call path sets up no stack frame. */
#define FF_DEFINE_WRAPPER(ret, name, kind, device, params, args, entry, not_found)          \
    static __attribute__((noinline, cold)) ret ff_slow_##name params {                   \
        int ff_error = ff_fault_error(#name, kind, device);                              \
        if (ff_error) return ff_error;                                                   \
        ret(*ff_fn) params = (ret(*) params)ff_real_of(entry);                           \
        return ff_fn ? ff_fn args : (not_found);                                         \
    }                                                                                    \
    FF_EXPORT ret name params {                                                          \
        if (FF_FAULT_POSSIBLE()) return ff_slow_##name args;                             \
        ret(*ff_fn) params = (ret(*) params)atomic_load_explicit((entry)->real, memory_order_acquire); \
        return ff_fn args; /* the slow path itself until the real function is known */   \
    }

#endif /* FAULTFLOW_SHIM_H */
