/* The few CUDA types the shim forwards, declared by hand so it builds with gcc alone (no toolkit).
 *
 * Only the calling convention matters: the shim never looks inside these objects, it passes them on.
 * Handles are pointers, CUdevice is an int, CUdeviceptr is 64-bit, and dim3 is a 12-byte struct
 * passed by value (two integer registers on x86-64 SysV), so it must be declared as the struct.
 */
#ifndef FAULTFLOW_CUDA_TYPES_H
#define FAULTFLOW_CUDA_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef int CUresult;
typedef int cudaError_t;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef uint64_t cuuint64_t;
typedef void *CUcontext;
typedef void *CUstream;
typedef void *CUevent;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUlibrary;
typedef void *CUgraphExec;
typedef void *CUmemoryPool;
typedef void *cudaStream_t;
typedef void *cudaEvent_t;
typedef void *cudaGraphExec_t;
typedef void *cudaMemPool_t;

typedef struct { unsigned int x, y, z; } dim3;

enum {
    FF_CUDA_SUCCESS = 0,
    FF_CUDA_ERROR_NOT_FOUND = 500,          /* CUDA_ERROR_NOT_FOUND */
    FF_CUDA_ERROR_SYMBOL_NOT_FOUND = 500,   /* cudaErrorSymbolNotFound */
};

#endif /* FAULTFLOW_CUDA_TYPES_H */
