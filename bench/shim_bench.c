/* Per-call cost of a cheap driver call fetched the way cudart fetches it (dlopen + cuGetProcAddress).
 *   shim_bench direct N           the call as the process sees it (run it with and without LD_PRELOAD)
 *   shim_bench fopen N FLAGFILE   the reference shim's approach, measured with our own code: before
 *                                 every call, fopen + fgetc + fclose of a flag file
 * Prints nanoseconds per call. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*proc_v2_fn)(const char *, void **, int, unsigned long long, int *);
typedef int (*ctx_fn)(void **);

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    long n = atol(argv[2]);
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return 3;
    proc_v2_fn bootstrap = (proc_v2_fn)dlsym(lib, "cuGetProcAddress_v2"), proc = NULL;
    bootstrap("cuGetProcAddress", (void **)&proc, 12000, 0, NULL);
    ctx_fn volatile call = NULL;
    proc("cuCtxGetCurrent", (void **)&call, 4000, 0, NULL);
    void *ctx;
    for (long i = 0; i < 1000; i++) call(&ctx); /* warm-up: first call resolves, caches settle */
    int fopen_mode = strcmp(argv[1], "fopen") == 0;
    double start = now_ns();
    if (fopen_mode) {
        for (long i = 0; i < n; i++) {
            FILE *f = fopen(argv[3], "r");
            if (f) {
                if (fgetc(f) == '1') return 4;
                fclose(f);
            }
            call(&ctx);
        }
    } else {
        for (long i = 0; i < n; i++) call(&ctx);
    }
    printf("%.4f\n", (now_ns() - start) / (n ? n : 1));
    return 0;
}
