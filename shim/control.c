/* Configuration and the fault decision.
 *
 * Sources, read once at load (never on the per-call path):
 *   CUDA_FAULT_INJECTION_ENABLED  1/true: faults from the start (the reference's switch)
 *   CUDA_XID_TYPE                 XID whose errors the environment fault returns (default 79)
 *   CUDA_FAULT_GPU_ID             only calls on this device ordinal fail (-1 or unset: all)
 *   FAULTFLOW_TOGGLE_FILE         node toggle file, mapped MAP_SHARED (format: steps/toggle.py)
 *   FAULTFLOW_SHIM_QUIET          1: no start-up marker
 *
 * Byte 0 of the hot page is: 0 until initialised (so the first call initialises), '1' when the
 * environment enables faults, the toggle file's switch byte when the file is mapped over the page,
 * or '0'.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"
#include "xid_table.h"

#define FF_PAGE_SIZE 4096
__attribute__((aligned(FF_PAGE_SIZE))) volatile char ff_hot_page[FF_PAGE_SIZE];
__thread int ff_tl_injected __attribute__((tls_model("initial-exec")));
__thread int ff_tl_device __attribute__((tls_model("initial-exec")));

struct ff_fault {
    int xid;
    int gpu; /* -1: every device */
};

static struct {
    int enabled;
    struct ff_fault fault;
    const volatile char *map; /* the toggle file's FF_TOGGLE_SIZE bytes, or NULL */
} ff_config;

static pthread_once_t ff_once = PTHREAD_ONCE_INIT;
static _Atomic int ff_last_logged; /* xid * 4 + kind of the last injection reported on stderr */

static int ff_valid_xid(long xid) { return xid >= FF_XID_MIN && xid <= FF_XID_MAX; }

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
    if (!ok || !ff_valid_xid(ff_config.fault.xid)) {
        /* Never fall back silently to another XID: a wrong scenario is worse than none. */
        fprintf(stderr, "faultflow-shim: CUDA_XID_TYPE=%s is not an XID %d-%d; faults from the environment are off\n",
                getenv("CUDA_XID_TYPE"), FF_XID_MIN, FF_XID_MAX);
        ff_config.enabled = 0;
        ff_config.fault.xid = 0;
    }
    ff_config.fault.gpu = ff_env_int("CUDA_FAULT_GPU_ID", -1, &ok);
    if (!ok) {
        fprintf(stderr, "faultflow-shim: CUDA_FAULT_GPU_ID=%s is not a device index; targeting all devices\n",
                getenv("CUDA_FAULT_GPU_ID"));
        ff_config.fault.gpu = -1;
    }
}

/* Maps the toggle file read-only and shared — over the hot page when `at` is given — so a write on
 * the node is seen by the next call. A file of size 0 is not mapped: reading a page wholly past the
 * end of a file raises SIGBUS. */
static const char *ff_map_toggle(const char *path, volatile char *at) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "missing";
    struct stat st;
    const char *state = "empty";
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *map = mmap((void *)at, FF_PAGE_SIZE, PROT_READ, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
        if (map != MAP_FAILED) {
            ff_config.map = map;
            state = "mapped";
        } else {
            state = "unmappable";
        }
    }
    close(fd);
    return state;
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
        fprintf(stderr, "faultflow-shim: loaded version=%s pid=%d enabled=%d xid=%d gpu=%s toggle=%s (%s)\n",
                FF_VERSION, (int)getpid(), ff_config.enabled, ff_config.fault.xid, gpu,
                (path && *path) ? path : "-", toggle_state);
    }
}

void ff_init(void) { pthread_once(&ff_once, ff_do_init); }

__attribute__((constructor)) static void ff_constructor(void) { ff_init(); }

static long long ff_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Parses the toggle record's fields; 0 when the record does not describe an active, valid fault. */
static int ff_parse_toggle(const char *record, struct ff_fault *out) {
    long xid = 0, gpu = -1;
    long long expires_ms = 0;
    const char *p;
    if ((p = strstr(record, "xid="))) xid = strtol(p + 4, NULL, 10);
    if ((p = strstr(record, "gpu="))) gpu = strtol(p + 4, NULL, 10);
    if ((p = strstr(record, "expires_ms="))) expires_ms = strtoll(p + 11, NULL, 10);
    if (!ff_valid_xid(xid)) return 0;
    if (expires_ms != 0 && ff_now_ms() >= expires_ms) return 0;
    out->xid = (int)xid;
    out->gpu = gpu < 0 ? -1 : (int)gpu;
    return 1;
}

static int ff_active_fault(struct ff_fault *out) {
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

static int ff_current_device(void) {
    int device;
    if (ff_driver_current_device(&device) == 0) return device;
    return ff_tl_device; /* no current context yet: the device cudaSetDevice chose, 0 by default */
}

static void ff_report(const char *api, int xid, enum ff_kind kind, int error) {
    int key = xid * 4 + (int)kind;
    if (atomic_exchange_explicit(&ff_last_logged, key, memory_order_relaxed) != key)
        fprintf(stderr, "faultflow-shim: injecting XID %d (%s): %s returns %d\n", xid, ff_xid_table[xid].name, api,
                error);
}

int ff_fault_error(const char *api, enum ff_kind kind, int device) {
    ff_init();
    struct ff_fault fault;
    if (!ff_active_fault(&fault)) {
        atomic_store_explicit(&ff_last_logged, 0, memory_order_relaxed);
        return 0;
    }
    if (fault.gpu >= 0) {
        if (kind == FF_INIT) return 0; /* one broken GPU does not fail driver initialisation */
        int target = kind == FF_DEVICE ? device : ff_current_device();
        if (target != fault.gpu) return 0;
    }
    const struct ff_xid *entry = &ff_xid_table[fault.xid];
    int error = kind == FF_INIT ? entry->init_error : entry->call_error;
    if (error) {
        ff_tl_injected = error;
        ff_report(api, fault.xid, kind, error);
    }
    return error;
}
