/* Per-call cost of a cheap NVML device query reached the way pynvml and DCGM reach it (dlopen +
 * dlsym on the handle): nvmlDeviceGetIndex, which the NVML interposer wraps.
 *   nvml_bench N     prints nanoseconds per call (run it with and without LD_PRELOAD) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef int (*init_fn)(void);
typedef int (*handle_fn)(unsigned int, void **);
typedef int (*index_fn)(void *, unsigned int *);

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long n = atol(argv[1]);
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return 3;
    init_fn init = (init_fn)dlsym(lib, "nvmlInit_v2");
    handle_fn handle = (handle_fn)dlsym(lib, "nvmlDeviceGetHandleByIndex_v2");
    index_fn volatile get_index = (index_fn)dlsym(lib, "nvmlDeviceGetIndex");
    void *device;
    unsigned int index;
    if (!init || !handle || !get_index || init() != 0 || handle(0, &device) != 0) return 4;
    for (long i = 0; i < 1000; i++) get_index(device, &index); /* warm-up: first call resolves, caches settle */
    double start = now_ns();
    for (long i = 0; i < n; i++) get_index(device, &index);
    printf("%.4f\n", (now_ns() - start) / (n ? n : 1));
    return 0;
}
