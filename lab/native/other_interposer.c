/* Another LD_PRELOAD interposer, as a profiler or a second fault tool would be: it wraps puts() and
 * finds the real one with dlsym(RTLD_NEXT). Preloaded after the shim, that lookup goes through the
 * shim's dlsym hook; if the hook does not forward RTLD_NEXT as a tail call, glibc resolves "next"
 * relative to the shim and returns this very function. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int puts(const char *text) {
    int (*real)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "puts");
    if (real == NULL || real == puts) {
        fprintf(stderr, "BROKEN: dlsym(RTLD_NEXT, \"puts\") returned %s\n", real ? "the interposer itself" : "NULL");
        _exit(3);
    }
    fputs("[wrapped] ", stdout);
    return real(text);
}
