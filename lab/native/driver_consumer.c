/* A driver-API consumer that reaches libcuda the two ways real programs do.
 *
 *   driver_consumer_proc    like cudart: dlopen("libcuda.so.1", RTLD_LOCAL), dlsym("cuGetProcAddress_v2"),
 *                           then "cuGetProcAddress"@12000 and every entry point through it
 *   driver_consumer_linked  linked against libcuda.so.1, calls by symbol (-DLINKED)
 *
 * Operations come from argv, or one per line from stdin after "-" (so a test can drive a running
 * process while it flips the toggle). Each prints "op=result" on stdout:
 *   init count device:N alloc free launch launch_ptsz sync memcpy_ptds ctx
 *   bus:N   (cuDeviceGetPCIBusId of device N: "bus:N=<result> id=<bus id>")
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef CUresult (*proc_v2_fn)(const char *, void **, int, unsigned long long, int *);

struct driver {
    CUresult (*init)(unsigned int);
    CUresult (*count)(int *);
    CUresult (*device_get)(int *, int);
    CUresult (*ctx_create)(void **, unsigned int, int);
    CUresult (*alloc)(CUdeviceptr *, size_t);
    CUresult (*free_)(CUdeviceptr);
    CUresult (*launch)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **,
                       void **);
    CUresult (*launch_ptsz)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                            void **, void **);
    CUresult (*sync)(void);
    CUresult (*memcpy_ptds)(CUdeviceptr, const void *, size_t);
    CUresult (*ctx_current)(void **);
    CUresult (*bus_id)(char *, int, int);
};

#ifdef LINKED
CUresult cuInit(unsigned int);
CUresult cuDeviceGetCount(int *);
CUresult cuDeviceGet(int *, int);
CUresult cuCtxCreate_v2(void **, unsigned int, int);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuLaunchKernel(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **,
                        void **);
CUresult cuLaunchKernel_ptsz(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *,
                             void **, void **);
CUresult cuCtxSynchronize(void);
CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr, const void *, size_t);
CUresult cuCtxGetCurrent(void **);
CUresult cuDeviceGetPCIBusId(char *, int, int);

static int load(struct driver *d) {
    *d = (struct driver){cuInit,         cuDeviceGetCount,    cuDeviceGet,      cuCtxCreate_v2,
                         cuMemAlloc_v2,  cuMemFree_v2,        cuLaunchKernel,   cuLaunchKernel_ptsz,
                         cuCtxSynchronize, cuMemcpyHtoD_v2_ptds, cuCtxGetCurrent, cuDeviceGetPCIBusId};
    return 0;
}
#else
static int load(struct driver *d) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "cannot load libcuda.so.1: %s\n", dlerror());
        return 1;
    }
    proc_v2_fn bootstrap = (proc_v2_fn)dlsym(lib, "cuGetProcAddress_v2");
    proc_v2_fn proc = NULL;
    if (!bootstrap || bootstrap("cuGetProcAddress", (void **)&proc, 12000, 0, NULL) != 0 || !proc) {
        fprintf(stderr, "no cuGetProcAddress\n");
        return 1;
    }
#define GET(field, name, version, flags) proc(name, (void **)&d->field, version, flags, NULL)
    GET(init, "cuInit", 2000, 0);
    GET(count, "cuDeviceGetCount", 2000, 0);
    GET(device_get, "cuDeviceGet", 2000, 0);
    GET(ctx_create, "cuCtxCreate", 3020, 0);
    GET(alloc, "cuMemAlloc", 3020, 0);
    GET(free_, "cuMemFree", 3020, 0);
    GET(launch, "cuLaunchKernel", 4000, 0);
    GET(launch_ptsz, "cuLaunchKernel", 7000, 2);
    GET(sync, "cuCtxSynchronize", 2000, 0);
    GET(memcpy_ptds, "cuMemcpyHtoD", 7000, 2);
    GET(ctx_current, "cuCtxGetCurrent", 4000, 0);
    GET(bus_id, "cuDeviceGetPCIBusId", 4010, 0);
#undef GET
    return 0;
}
#endif

static void run(struct driver *d, const char *op) {
    CUresult r;
    CUdeviceptr ptr = 0;
    void *ctx = NULL;
    int value = 0;
    if (strcmp(op, "init") == 0) {
        r = d->init(0);
    } else if (strcmp(op, "count") == 0) {
        value = -1;
        r = d->count(&value);
        printf("count=%d devices=%d\n", r, value);
        fflush(stdout);
        return;
    } else if (strncmp(op, "device:", 7) == 0) {
        int device = -1;
        r = d->device_get(&device, atoi(op + 7));
        if (r == 0) r = d->ctx_create(&ctx, 0, device);
    } else if (strcmp(op, "alloc") == 0) {
        r = d->alloc(&ptr, 1 << 20);
    } else if (strcmp(op, "free") == 0) {
        r = d->free_(0xdead0000ull);
    } else if (strcmp(op, "launch") == 0) {
        r = d->launch(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
    } else if (strcmp(op, "launch_ptsz") == 0) {
        r = d->launch_ptsz(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
    } else if (strcmp(op, "sync") == 0) {
        r = d->sync();
    } else if (strcmp(op, "memcpy_ptds") == 0) {
        r = d->memcpy_ptds(0, &value, sizeof value);
    } else if (strncmp(op, "bus:", 4) == 0) {
        char bus[64] = "-";
        r = d->bus_id(bus, sizeof bus, atoi(op + 4));
        printf("%s=%d id=%s\n", op, r, r == 0 ? bus : "-");
        fflush(stdout);
        return;
    } else if (strcmp(op, "ctx") == 0) {
        r = d->ctx_current(&ctx);
    } else {
        printf("%s=unknown-op\n", op);
        fflush(stdout);
        return;
    }
    printf("%s=%d\n", op, r);
    fflush(stdout);
}

int main(int argc, char **argv) {
    struct driver d;
    if (load(&d)) return 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-") == 0) {
            char line[128];
            while (fgets(line, sizeof line, stdin)) {
                line[strcspn(line, "\r\n")] = '\0';
                if (*line) run(&d, line);
            }
        } else {
            run(&d, argv[i]);
        }
    }
    return 0;
}
