/* Configuration, the node toggle, triggers and hangs: shared by the CUDA and the NVML library.
 *
 * Sources, read once at load (never on the per-call path):
 *   CUDA_FAULT_INJECTION_ENABLED  1/true: faults from the start (the reference's switch)
 *   CUDA_XID_TYPE                 XID whose errors the environment fault returns (default 79)
 *   CUDA_FAULT_GPU_ID             only calls on this device ordinal fail (-1 or unset: all)
 *   FAULTFLOW_TOGGLE_FILE         node toggle file, mapped MAP_SHARED (format: steps/gpu/toggle.py)
 *   FAULTFLOW_SHIM_QUIET          1: no start-up marker
 *
 * Byte 0 of the hot page is: 0 until initialised (so the first call initialises), '1' when the
 * environment enables faults, the toggle file's switch byte when the file is mapped over the page,
 * FF_STALE after the file was truncated under the mapping (below), or '0'. Nothing below runs while
 * it reads '0'.
 *
 * What the toggle file's owner can get wrong, and why it cannot crash or pin a process:
 *   - Truncation (`> toggle`, or any writer that truncates first): reading a mapped page wholly past
 *     the end of its file raises SIGBUS. The per-call path must stay a byte compare, so it cannot
 *     check the size or read through a copy (a private copy would need the slow path to refresh it,
 *     and the slow path never runs while the copy reads '0', so a switch-on would never be seen).
 *     Instead a SIGBUS handler, installed only when a toggle is mapped and chained to the previous
 *     one for every other address, maps an anonymous page over the toggle's page. The faulting load is
 *     retried and reads FF_STALE, which sends calls to the slow path, which maps the file again once it
 *     holds a record (checked at most every FF_RECHECK_MS; until then a call costs the slow path's
 *     clock read, not a crash). Limit: a handler the application installs later replaces ours.
 *   - Replacement by rename: the mapping keeps the old inode. The slow path compares the path's inode
 *     with the mapped one (at most every FF_RECHECK_MS) and maps the new file, so a fault on the old
 *     file can always be switched off through the new one. A process whose old file reads '0' never
 *     takes the slow path, so it sees a new file only when it next starts (our writer never renames).
 *   - Absurd fields: a GPU id beyond FF_GPU_MAX, or an expiry of 0 or more than FF_EXPIRY_MAX_MS away,
 *     makes the record read as off (never wrapped to device 0, never "forever").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "xid_table.h"

#define FF_PAGE_SIZE 4096
__attribute__((aligned(FF_PAGE_SIZE))) volatile char ff_hot_page[FF_PAGE_SIZE];

/* What the hot page reads after a truncated toggle was replaced by an anonymous page: not '0', so every
 * call takes the slow path, which maps the file again. */
#define FF_STALE 's'
#define FF_RECHECK_MS 100

static struct {
    int enabled;
    struct ff_fault fault;
    const volatile char *map; /* the toggle file's page (FF_TOGGLE_SIZE bytes used), or NULL */
    char path[PATH_MAX];      /* the toggle file, to map it again */
    dev_t dev;                /* identity of the mapped file */
    ino_t ino;
    _Atomic int stale;             /* the SIGBUS handler replaced the mapping */
    _Atomic long long next_check;  /* monotonic ms of the next inode re-check */
    pthread_mutex_t remap;         /* one re-map at a time */
    struct sigaction previous_sigbus;
} ff_config = {.remap = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t ff_once = PTHREAD_ONCE_INIT;

static int ff_valid_xid(long long xid) { return xid >= FF_XID_MIN && xid <= FF_XID_MAX; }

void ff_log(const char *format, ...) {
    char line[512];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    fprintf(stderr, "%s: %s\n", ff_library.log_name, line);
}

static int ff_env_flag(const char *name) {
    const char *value = getenv(name);
    return value && (strcmp(value, "1") == 0 || strcasecmp(value, "true") == 0);
}

static int ff_env_int(const char *name, int fallback, int *ok) {
    const char *value = getenv(name);
    *ok = 1;
    if (!value || !*value) return fallback;
    char *end;
    errno = 0;
    long parsed = strtol(value, &end, 10);
    if (errno || *end || parsed < -1 || parsed > 1 << 20) {
        *ok = 0;
        return fallback;
    }
    return (int)parsed;
}

static void ff_read_environment(void) {
    int ok;
    ff_config.enabled = ff_env_flag("CUDA_FAULT_INJECTION_ENABLED");
    ff_config.fault.xid = ff_env_int("CUDA_XID_TYPE", 79, &ok);
    ff_config.fault.ppm = 1000000;
    if (!ok || !ff_valid_xid(ff_config.fault.xid)) {
        /* Never fall back silently to another XID: a wrong scenario is worse than none. */
        ff_log("CUDA_XID_TYPE=%s is not an XID %d-%d; faults from the environment are off", getenv("CUDA_XID_TYPE"),
               FF_XID_MIN, FF_XID_MAX);
        ff_config.enabled = 0;
        ff_config.fault.xid = 0;
    }
    ff_config.fault.gpu = ff_env_int("CUDA_FAULT_GPU_ID", -1, &ok);
    if (!ok || ff_config.fault.gpu > FF_GPU_MAX) {
        ff_log("CUDA_FAULT_GPU_ID=%s is not a device index; targeting all devices", getenv("CUDA_FAULT_GPU_ID"));
        ff_config.fault.gpu = -1;
    }
}

/* Opens the toggle file and maps it read-only and shared over `at` (MAP_FIXED when given), so a write
 * on the node is seen by the next call. A file of size 0 is not mapped: reading a page wholly past the
 * end of a file raises SIGBUS. Returns the state for the start-up marker. */
static const char *ff_map_file(const char *path, volatile char *at) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "missing";
    struct stat st;
    const char *state = "empty";
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *map = mmap((void *)at, FF_PAGE_SIZE, PROT_READ, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
        if (map != MAP_FAILED) {
            ff_config.map = map;
            ff_config.dev = st.st_dev;
            ff_config.ino = st.st_ino;
            state = "mapped";
        } else {
            state = "unmappable";
        }
    }
    close(fd);
    return state;
}

/* The toggle page faulted: the file was truncated under the mapping. Only a fault inside that page is
 * ours; anything else goes to the handler that was there before (or the default action). */
static void ff_on_sigbus(int signo, siginfo_t *info, void *context) {
    char *page = (char *)ff_config.map;
    char *address = info ? (char *)info->si_addr : NULL;
    if (page && info && info->si_code > 0 && address >= page && address < page + FF_PAGE_SIZE) {
        /* mmap is a system call, safe in a handler; the faulting load is retried on this page. */
        void *fresh = mmap(page, FF_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (fresh != MAP_FAILED) {
            page[0] = FF_STALE;
            atomic_store_explicit(&ff_config.stale, 1, memory_order_release);
            return;
        }
    }
    const struct sigaction *previous = &ff_config.previous_sigbus;
    if ((previous->sa_flags & SA_SIGINFO) && previous->sa_sigaction) {
        previous->sa_sigaction(signo, info, context);
    } else if (previous->sa_handler != SIG_DFL && previous->sa_handler != SIG_IGN) {
        previous->sa_handler(signo);
    } else {
        /* The default action: for a fault, returning re-runs the load, which faults again and kills
         * the process as if we were not here; a SIGBUS sent by kill() is raised again. */
        signal(signo, SIG_DFL);
        if (!info || info->si_code <= 0) raise(signo);
    }
}

static void ff_install_sigbus_handler(void) {
    struct sigaction ours;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = ff_on_sigbus;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    sigaction(SIGBUS, &ours, &ff_config.previous_sigbus);
}

static const char *ff_map_toggle(const char *path, volatile char *at) {
    const char *state = ff_map_file(path, at);
    if (ff_config.map) {
        snprintf(ff_config.path, sizeof ff_config.path, "%s", path);
        ff_install_sigbus_handler();
    }
    return state;
}

static long long ff_monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Slow path only, at most every FF_RECHECK_MS: maps the toggle file again when the mapping went stale
 * (truncated) or the path now names another file (replaced by rename). While the file is missing or
 * empty the old page stays: a stale page keeps every call on the slow path, so the file is picked up
 * as soon as it holds a record again. */
static void ff_recheck_toggle(void) {
    if (!ff_config.map || !ff_config.path[0]) return;
    long long now = ff_monotonic_ms();
    long long due = atomic_load_explicit(&ff_config.next_check, memory_order_relaxed);
    if (now < due ||
        !atomic_compare_exchange_strong_explicit(&ff_config.next_check, &due, now + FF_RECHECK_MS, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;
    int stale = atomic_load_explicit(&ff_config.stale, memory_order_acquire);
    struct stat st;
    if (stat(ff_config.path, &st) != 0 || st.st_size == 0) return;
    if (!stale && st.st_dev == ff_config.dev && st.st_ino == ff_config.ino) return;
    pthread_mutex_lock(&ff_config.remap);
    /* A truncation between here and the next read is the handler's again. */
    atomic_store_explicit(&ff_config.stale, 0, memory_order_release);
    if (strcmp(ff_map_file(ff_config.path, (volatile char *)ff_config.map), "mapped") != 0 && stale)
        atomic_store_explicit(&ff_config.stale, 1, memory_order_release);
    pthread_mutex_unlock(&ff_config.remap);
}

static void ff_do_init(void) {
    ff_read_environment();
    const char *path = getenv("FAULTFLOW_TOGGLE_FILE");
    const char *toggle_state = "unset";
    if (ff_config.enabled) {
        /* Faults from the start: every call takes the slow path, which still reads the file's XID. */
        ff_hot_page[0] = '1';
        if (path && *path) toggle_state = ff_map_toggle(path, NULL);
    } else {
        ff_hot_page[0] = '0';
        if (path && *path) toggle_state = ff_map_toggle(path, ff_hot_page);
    }

    if (!ff_env_flag("FAULTFLOW_SHIM_QUIET")) {
        char gpu[16];
        if (ff_config.fault.gpu < 0)
            snprintf(gpu, sizeof gpu, "all");
        else
            snprintf(gpu, sizeof gpu, "%d", ff_config.fault.gpu);
        ff_log("loaded version=%s pid=%d enabled=%d xid=%d gpu=%s toggle=%s (%s)", FF_VERSION, (int)getpid(),
               ff_config.enabled, ff_config.fault.xid, gpu, (path && *path) ? path : "-", toggle_state);
    }
}

void ff_init(void) { pthread_once(&ff_once, ff_do_init); }

__attribute__((constructor)) static void ff_constructor(void) { ff_init(); }

long long ff_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The value after "key=" in the record, or NULL. Keys are matched at a token start, so "at=" does
 * not match inside "expires_at=". */
static const char *ff_field(const char *record, const char *key) {
    size_t n = strlen(key);
    for (const char *p = strstr(record, key); p; p = strstr(p + 1, key))
        if ((p == record || p[-1] == ' ') && p[n] == '=') return p + n + 1;
    return NULL;
}

int ff_parse_bus_id(const char *text, unsigned long long *key) {
    unsigned int domain, bus, device, function;
    if (sscanf(text, "%x:%x:%x.%x", &domain, &bus, &device, &function) != 4) return 0;
    *key = ((unsigned long long)domain << 32) | (bus << 16) | (device << 8) | function;
    return 1;
}

/* "0.25" → 250000, without strtod (whose decimal point follows the process's locale). */
static unsigned int ff_parse_ppm(const char *text) {
    unsigned long whole = strtoul(text, (char **)&text, 10);
    if (whole >= 1) return 1000000;
    unsigned int ppm = 0, scale = 100000;
    if (*text == '.')
        for (text++; *text >= '0' && *text <= '9' && scale; text++, scale /= 10) ppm += (unsigned)(*text - '0') * scale;
    return ppm;
}

/* Parses the toggle record's fields; 0 when the record does not describe an active, valid fault.
 * A version-1 record (no v=) has only xid, expires_ms and gpu: error mode, every call. */
/* The whole-number field `key` (fallback when absent); 0 when present but not a number that ends at
 * the token's end ("gpu=x" must not read as device 0). Overflow saturates (LLONG_MAX): out of any bound. */
static int ff_number(const char *record, const char *key, long long fallback, long long *out) {
    const char *p = ff_field(record, key);
    if (!p) {
        *out = fallback;
        return 1;
    }
    char *end;
    *out = strtoll(p, &end, 10);
    return end != p && (*end == ' ' || *end == '\n' || *end == '\0');
}

static int ff_parse_toggle(const char *record, struct ff_fault *out) {
    const char *p;
    long long xid, gpu, expires_ms;
    if (!ff_number(record, "xid", 0, &xid) || !ff_number(record, "gpu", -1, &gpu) ||
        !ff_number(record, "expires_ms", 0, &expires_ms))
        return 0;
    if (!ff_valid_xid(xid)) return 0;
    /* Parsed as long long: 4294967296 stays itself and is refused, instead of wrapping to device 0. */
    if (gpu < -1 || gpu > FF_GPU_MAX) return 0;
    /* 0 ("never", version 1) and anything further than a day away (3.6e26 parses as LLONG_MAX) would
     * keep a forgotten fault on for good: off. */
    long long now = ff_now_ms();
    if (expires_ms <= now || expires_ms - now > FF_EXPIRY_MAX_MS) return 0;
    memset(out, 0, sizeof *out);
    out->xid = (int)xid;
    out->gpu = (int)gpu;
    out->expires_ms = expires_ms;
    out->ppm = 1000000;
    if ((p = ff_field(record, "at"))) out->at_ms = strtoll(p, NULL, 10);
    if ((p = ff_field(record, "mode")) && strncmp(p, "hang", 4) == 0) out->mode = FF_MODE_HANG;
    if ((p = ff_field(record, "after"))) out->after = strtoul(p, NULL, 10);
    if ((p = ff_field(record, "prob"))) out->ppm = ff_parse_ppm(p);
    if ((p = ff_field(record, "seed"))) out->seed = strtoull(p, NULL, 10);
    if ((p = ff_field(record, "hang_ms"))) out->hang_ms = strtoll(p, NULL, 10);
    if ((p = ff_field(record, "bus")) && *p != '-') {
        size_t n = strcspn(p, " \n");
        if (n >= sizeof out->bus) n = sizeof out->bus - 1;
        memcpy(out->bus, p, n);
        out->bus[n] = '\0';
    }
    return 1;
}

int ff_active_fault(struct ff_fault *out) {
    ff_init();
    ff_recheck_toggle();
    if (ff_config.map && ff_config.map[0] == '1') {
        char record[FF_TOGGLE_SIZE + 1];
        memcpy(record, (const char *)ff_config.map, FF_TOGGLE_SIZE);
        record[FF_TOGGLE_SIZE] = '\0';
        /* The writer sets byte 0 last when switching on and first when switching off, so a record
         * whose copy still starts with '1' has a complete body. */
        if (record[0] == '1' && ff_parse_toggle(record, out)) return 1;
    }
    if (ff_config.enabled) {
        *out = ff_config.fault;
        return 1;
    }
    return 0;
}

int ff_toggle_mapped(void) {
    ff_init();
    return ff_config.map != NULL;
}

/* Triggers. Counted per process and per injection (the record's at_ms): the first `after` targeted
 * calls pass; after that each one fails with probability ppm/1e6, drawn from a sequence fixed by the
 * seed (call k of the injection always draws the same number), so an intermittent fault replays. */
static _Atomic long long ff_trigger_injection = -1;
static _Atomic unsigned long ff_trigger_calls;

static unsigned long long ff_splitmix64(unsigned long long x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int ff_trigger_fires(const struct ff_fault *fault) {
    if (fault->after == 0 && fault->ppm >= 1000000) return 1; /* every call: no state to keep */
    long long seen = atomic_load_explicit(&ff_trigger_injection, memory_order_acquire);
    if (seen != fault->at_ms &&
        atomic_compare_exchange_strong_explicit(&ff_trigger_injection, &seen, fault->at_ms, memory_order_acq_rel,
                                                memory_order_acquire))
        atomic_store_explicit(&ff_trigger_calls, 0, memory_order_release);
    unsigned long call = atomic_fetch_add_explicit(&ff_trigger_calls, 1, memory_order_acq_rel);
    if (call < fault->after) return 0;
    if (fault->ppm >= 1000000) return 1;
    unsigned long long draw = ff_splitmix64(fault->seed ^ ff_splitmix64(call)) % 1000000ull;
    return draw < fault->ppm;
}

/* Hang mode: the calling thread stays in the call while the same injection lasts. The toggle is a
 * plain file written by `faultflow shim off`, which wakes no one, so the mapped record is polled;
 * 1 ms bounds the delay between the switch and the call going on. Returns 1 when `hang_ms` passed
 * (the caller then fails the call, as the driver's watchdog does), 0 when the fault ended (the call
 * goes on to the real function, like a process resumed after SIGSTOP). */
/* The bound is measured on the monotonic clock in nanoseconds: whole wall-clock milliseconds could end
 * a 300 ms hang after 299.001 ms, and a clock step would stretch or cut it. */
static long long monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

int ff_hang(const struct ff_fault *fault) {
    long long start = monotonic_ns();
    const struct timespec tick = {0, 1000000};
    for (;;) {
        struct ff_fault now;
        if (!ff_active_fault(&now) || now.at_ms != fault->at_ms || now.mode != FF_MODE_HANG) return 0;
        if (fault->hang_ms > 0 && monotonic_ns() - start >= fault->hang_ms * 1000000LL) return 1;
        nanosleep(&tick, NULL);
    }
}
