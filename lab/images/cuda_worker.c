/* The lab's smallest GPU worker: a CUDA driver-API program linked against libcuda.so.1, which in the
 * lab image is the DRIVER SIMULATOR (lab/native/driver_simulator.c), as a real node's container
 * toolkit injects the real driver. Run under the shim (LD_PRELOAD), it shows what a workload sees:
 * one line at start (cuInit and the device count) and one line each time cuCtxSynchronize's result
 * changes (0, then the XID's error while the node toggle is on, then 0 again). */
#include <stdio.h>
#include <unistd.h>

typedef int CUresult;
CUresult cuInit(unsigned int flags);
CUresult cuDeviceGetCount(int *count);
CUresult cuCtxSynchronize(void);

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int count = -1;
    CUresult init = cuInit(0);
    CUresult counted = cuDeviceGetCount(&count);
    printf("cuda-worker: init=%d count=%d devices=%d\n", init, counted, count);
    int last = -1;
    for (;;) {
        CUresult result = cuCtxSynchronize();
        if (result != last) {
            printf("cuda-worker: sync=%d\n", result);
            last = result;
        }
        usleep(100 * 1000); /* a worker's step time: polling CUDA is what the program is for */
    }
}
