/* What the two faultflow interposers share: the node toggle, the fault decision's inputs, and the
 * machinery that finds the real functions behind their wrappers.
 *
 *   libfaultflow_cuda.so  = control.c interpose.c api_driver.c api_runtime.c   (CUDA applications)
 *   libfaultflow_nvml.so  = control.c interpose.c api_nvml.c                    (NVML consumers)
 *
 * Why two libraries built from one control code, not one library: the processes differ. The CUDA
 * library goes into the workload; the NVML one into the node's health readers (the device plugin,
 * DCGM, the DRA driver), which have no CUDA context and must not have their ~100 cu* symbols
 * interposed, and the workload must not pay for NVML wrappers it never calls. Each library carries
 * its own copy of the control code (hidden symbols), maps the same toggle file and reads the same
 * XID table, so one `faultflow shim on` drives both. Both hook dlsym; each forwards to the next
 * dlsym in the search order, so both can be preloaded into one process.
 */
#ifndef FAULTFLOW_CONTROL_H
#define FAULTFLOW_CONTROL_H

#include <stdatomic.h>
#include <stddef.h>

#define FF_EXPORT __attribute__((visibility("default")))
#define FF_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define FF_VERSION "0.2.0"
/* The toggle record (steps/gpu/toggle.py). Version 1 was 64 bytes (xid, expires_ms, gpu); version 2 is
 * 256 bytes and keeps version 1's fields first, in the same form, so a version-1 reader still finds
 * them within its 64 bytes. Reading 256 bytes of a 64-byte file is safe: the mapped page past the
 * end of the file reads as zeros. */
#define FF_TOGGLE_SIZE 256
/* Bounds of a toggle record's fields (steps/gpu/toggle.py MAX_GPU, MAX_DURATION_MS): outside them the
 * record reads as off. */
#define FF_GPU_MAX 63
#define FF_EXPIRY_MAX_MS (24LL * 3600 * 1000)

/* One interposed function: its name, our wrapper, and where the real function's address is kept.
 * Until the real function is known the slot holds `unresolved`, the wrapper's own slow path, so the
 * per-call path can jump through the slot without testing it. */
struct ff_entry {
    const char *name;
    void *wrapper;
    void *_Atomic *real;
    void *unresolved;
    int driver; /* 1: look the real function up in the library's own soname when RTLD_NEXT misses */
};

/* What each library tells the shared code about itself. */
struct ff_library {
    const char *log_name;      /* prefix of its stderr lines */
    const char *soname;        /* the real library, for entries with driver = 1 */
};
extern const struct ff_library ff_library;

/* control.c: the hot page. Byte 0 is the only thing the per-call path reads ('0' = pass through).
 * It is the library's own page-aligned page, and where a toggle file is configured the file itself
 * is mapped over it (MAP_FIXED, MAP_SHARED), so a write on the node is seen by the next call. */
extern volatile char ff_hot_page[];
#define FF_FAULT_POSSIBLE() FF_UNLIKELY(ff_hot_page[0] != '0')

enum ff_mode { FF_MODE_ERROR, FF_MODE_HANG };

/* One active fault, as the toggle record (or the environment) describes it. */
struct ff_fault {
    int xid;
    int gpu;                 /* -1: every device */
    enum ff_mode mode;
    long long at_ms;         /* when it was switched on: identifies the injection (0: from the environment) */
    long long expires_ms;    /* 0: never */
    unsigned long after;     /* the first `after` targeted calls pass, the rest fail */
    unsigned int ppm;        /* each targeted call fails with probability ppm / 1e6 */
    unsigned long long seed; /* of the per-process draw sequence */
    long long hang_ms;       /* hang mode: a blocked call gives up after this long (0: never) */
    char bus[32];            /* PCI bus id of the targeted device ("" : by index, `gpu`) */
};

/* "00000000:3B:00.0", "0000:3b:00.0" → one comparable number (domain, bus, device, function); 0 when
 * the text is not a bus id. */
int ff_parse_bus_id(const char *text, unsigned long long *key);

void ff_init(void);
int ff_active_fault(struct ff_fault *out);
/* Whether a toggle file is mapped (a fault can be switched on at any moment). */
int ff_toggle_mapped(void);
void ff_log(const char *format, ...) __attribute__((format(printf, 1, 2)));
long long ff_now_ms(void);
/* Counts one targeted call of the injection and says whether it fails (--after-calls, --probability). */
int ff_trigger_fires(const struct ff_fault *fault);
/* Blocks while the hang lasts: 1 when its bound passed, 0 when the fault ended. */
int ff_hang(const struct ff_fault *fault);
/* The CUDA device the calling thread works on (the NVML library has none: -1). */
int ff_driver_current_device(int *device);

/* interpose.c */
typedef void *(*ff_dlsym_fn)(void *, const char *);
ff_dlsym_fn ff_load_real_dlsym(void);
void *ff_resolve(const struct ff_entry *entry);
void *ff_adopt(const struct ff_entry *entry, void *real);
/* Each library's own: the entry wrapping `name`, or NULL. */
const struct ff_entry *ff_find_entry(const char *name);

/* The real function of an entry, resolved on first use (symbol-linked callers reach the wrapper
 * without any lookup that could have told us the real address). */
static inline void *ff_real_of(const struct ff_entry *entry) {
    void *fn = atomic_load_explicit(entry->real, memory_order_acquire);
    return FF_UNLIKELY(fn == entry->unresolved) ? ff_resolve(entry) : fn;
}

#endif /* FAULTFLOW_CONTROL_H */
