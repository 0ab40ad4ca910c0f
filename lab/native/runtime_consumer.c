/* A runtime-API consumer, built against the real cudart from PyPI, shared and static.
 * Prototypes are declared by hand (the wheels ship no complete headers; no toolkit is needed).
 * Operations from argv, each printing "op=result": count malloc lasterror peek setdevice:N sync
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaDeviceSynchronize(void);

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *op = argv[i];
        cudaError_t r;
        if (strcmp(op, "count") == 0) {
            int count = -1;
            r = cudaGetDeviceCount(&count);
            printf("count=%d devices=%d\n", r, count);
            continue;
        } else if (strcmp(op, "malloc") == 0) {
            void *ptr = NULL;
            r = cudaMalloc(&ptr, 1 << 20);
        } else if (strcmp(op, "lasterror") == 0) {
            r = cudaGetLastError();
        } else if (strcmp(op, "peek") == 0) {
            r = cudaPeekAtLastError();
        } else if (strncmp(op, "setdevice:", 10) == 0) {
            r = cudaSetDevice(atoi(op + 10));
        } else if (strcmp(op, "sync") == 0) {
            r = cudaDeviceSynchronize();
        } else {
            printf("%s=unknown-op\n", op);
            continue;
        }
        printf("%s=%d\n", op, r);
    }
    fflush(stdout);
    return 0;
}
