/* The few NVML types and constants the NVML library forwards or fills, declared by hand so it builds
 * with gcc alone (no driver headers). Values and layouts are NVML's ABI (nvml.h, NVML 12.x/13.x). */
#ifndef FAULTFLOW_NVML_TYPES_H
#define FAULTFLOW_NVML_TYPES_H

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;
typedef void *nvmlEventSet_t;

enum {
    FF_NVML_SUCCESS = 0,
    FF_NVML_ERROR_UNINITIALIZED = 1,
    FF_NVML_ERROR_INVALID_ARGUMENT = 2,
    FF_NVML_ERROR_NOT_SUPPORTED = 3,
    FF_NVML_ERROR_INSUFFICIENT_SIZE = 7,
    FF_NVML_ERROR_TIMEOUT = 10,
    FF_NVML_ERROR_FUNCTION_NOT_FOUND = 13,
    FF_NVML_ERROR_GPU_IS_LOST = 15,
};

#define FF_NVML_EVENT_SINGLE_BIT_ECC 0x1ull
#define FF_NVML_EVENT_DOUBLE_BIT_ECC 0x2ull
#define FF_NVML_EVENT_XID_CRITICAL 0x8ull
#define FF_NVML_NO_INSTANCE 0xFFFFFFFFu /* gpuInstanceId / computeInstanceId of a device-level event */
#define FF_NVML_MEMORY_ERROR_UNCORRECTED 1
#define FF_NVML_RETIREMENT_DOUBLE_BIT 1
#define FF_NVML_FEATURE_ENABLED 1

typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType;
    unsigned long long eventData; /* the XID for XidCriticalError, 0 for the other types */
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlEventData_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain;
    unsigned int bus;
    unsigned int device;
    unsigned int pciDeviceId;
    unsigned int pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

#endif /* FAULTFLOW_NVML_TYPES_H */
