/* How calls reach the wrappers, and how the wrappers reach the real functions.
 *
 * cudart (shared and static, 12.x and 13.x) never calls driver functions by symbol: it dlopen()s
 * libcuda.so.1 RTLD_LOCAL, dlsym()s "cuGetProcAddress_v2" and fetches ~440 entry points through it,
 * including cuGetProcAddress itself. ctypes users dlsym() a handle too. Symbol interposition alone
 * is bypassed by all of these (shared/research/testinfra.md §1.7), so the shim also interposes
 * dlsym(): a lookup of a name we wrap returns our wrapper and records the real address, and our
 * cuGetProcAddress wrappers swap every pointer they hand out for the matching wrapper (api_driver.c).
 * NVML consumers (pynvml, DCGM) dlopen libnvidia-ml and dlsym it the same way; this file serves both
 * libraries, each with its own entries (ff_find_entry).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

#include "control.h"

static ff_dlsym_fn _Atomic ff_real_dlsym;

/* The next dlsym after this library: libc's, or another interposer's (the other faultflow library
 * when both are preloaded), so that each sees the lookups on its handles. */
ff_dlsym_fn ff_load_real_dlsym(void) {
    ff_dlsym_fn fn = atomic_load_explicit(&ff_real_dlsym, memory_order_acquire);
    if (fn) return fn;
    /* glibc 2.34 moved dlsym into libc with a new version; older programs bind GLIBC_2.2.5. */
    ff_dlsym_fn libc = (ff_dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (!libc) libc = (ff_dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    /* Called from this library, RTLD_NEXT finds the first dlsym defined after it, whatever its
     * version: a versioned lookup (dlvsym) would skip interposers, which define it unversioned. */
    fn = libc ? (ff_dlsym_fn)libc(RTLD_NEXT, "dlsym") : NULL;
    if (!fn) fn = libc;
    atomic_store_explicit(&ff_real_dlsym, fn, memory_order_release);
    return fn;
}

/* Records `real` as the entry's real function and returns the wrapper to hand out instead.
 * Never records the wrapper itself (a driver built without -Bsymbolic can hand our own symbol back,
 * which would make the wrapper call itself forever). If a different real function is already
 * recorded (a second copy of a library), the caller gets that copy's function unwrapped. */
void *ff_adopt(const struct ff_entry *entry, void *real) {
    if (real == NULL || real == entry->wrapper) return real;
    void *expected = entry->unresolved;
    if (atomic_compare_exchange_strong_explicit(entry->real, &expected, real, memory_order_acq_rel,
                                                memory_order_acquire) ||
        expected == real)
        return entry->wrapper;
    return real;
}

/* The real function for a wrapper reached by its symbol (the program links the library). */
void *ff_resolve(const struct ff_entry *entry) {
    ff_init();
    ff_dlsym_fn real_dlsym = ff_load_real_dlsym();
    /* Called from here, RTLD_NEXT means "after the shim": the library the program linked. */
    void *fn = real_dlsym(RTLD_NEXT, entry->name);
    if (!fn && entry->driver) {
        void *handle = dlopen(ff_library.soname, RTLD_LAZY | RTLD_NOLOAD);
        if (!handle) handle = dlopen(ff_library.soname, RTLD_LAZY | RTLD_LOCAL);
        if (handle) fn = real_dlsym(handle, entry->name);
    }
    if (fn == entry->wrapper) fn = NULL;
    void *expected = entry->unresolved;
    if (fn) atomic_compare_exchange_strong_explicit(entry->real, &expected, fn, memory_order_acq_rel, memory_order_acquire);
    fn = atomic_load_explicit(entry->real, memory_order_acquire);
    return fn == entry->unresolved ? NULL : fn;
}

static __attribute__((noinline)) void *ff_dlsym_handle(ff_dlsym_fn real_dlsym, void *handle, const char *symbol) {
    void *found = real_dlsym(handle, symbol);
    if (!found || !symbol) return found;
    const struct ff_entry *entry = ff_find_entry(symbol);
    return entry ? ff_adopt(entry, found) : found;
}

/* glibc resolves RTLD_NEXT against the return address of dlsym's caller. Forwarding it must be a
 * tail call (a jump, built at -O2), so that the caller seen by glibc is the original caller and other
 * interposers' dlsym(RTLD_NEXT, …) keep finding the next object after themselves. */
FF_EXPORT void *dlsym(void *handle, const char *symbol) {
    ff_dlsym_fn real_dlsym = atomic_load_explicit(&ff_real_dlsym, memory_order_relaxed);
    if (FF_UNLIKELY(real_dlsym == NULL)) real_dlsym = ff_load_real_dlsym();
    if (handle == RTLD_NEXT) return real_dlsym(handle, symbol);
    return ff_dlsym_handle(real_dlsym, handle, symbol);
}
