/* Many threads make their first CUDA calls at the same instant, as a serving process's workers do:
 * each fetches entry points through cuGetProcAddress (resolution races) and calls cuMemAlloc in a loop.
 * Prints how many calls returned each result, "result=<code> count=<n>" per distinct code. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define THREADS 16
#define CALLS 20000

typedef int (*proc_v2_fn)(const char *, void **, int, unsigned long long, int *);
typedef int (*alloc_fn)(unsigned long long *, size_t);

static pthread_barrier_t start;
static proc_v2_fn bootstrap;
static int results[THREADS][CALLS];

static void *worker(void *arg) {
    int *out = arg;
    pthread_barrier_wait(&start);
    proc_v2_fn proc = NULL;
    alloc_fn alloc = NULL;
    bootstrap("cuGetProcAddress", (void **)&proc, 12000, 0, NULL);
    proc("cuMemAlloc", (void **)&alloc, 3020, 0, NULL);
    unsigned long long ptr;
    for (int i = 0; i < CALLS; i++) out[i] = alloc(&ptr, 64);
    return NULL;
}

int main(void) {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return 2;
    bootstrap = (proc_v2_fn)dlsym(lib, "cuGetProcAddress_v2");
    pthread_barrier_init(&start, NULL, THREADS);
    pthread_t threads[THREADS];
    for (int t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, worker, results[t]);
    for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
    int codes[1024] = {0};
    for (int t = 0; t < THREADS; t++)
        for (int i = 0; i < CALLS; i++) codes[results[t][i] & 1023]++;
    for (int c = 0; c < 1024; c++)
        if (codes[c]) printf("result=%d count=%d\n", c, codes[c]);
    return 0;
}
