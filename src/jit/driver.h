/* The CUDA Driver API, loaded with dlopen("libcuda.so.1") and resolved through
 * cuGetProcAddress_v2 at the CUDA 12.0 ABI, so the library links no CUDA library and loads on
 * machines without a driver. Loaded once per process, on first need. */
#ifndef MOEJIT_DRIVER_H
#define MOEJIT_DRIVER_H

#include <cuda.h>

#include "moejit.h"

typedef struct mj_driver {
    int version; /* cuDriverGetVersion, e.g. 13000 */
    CUresult (*init)(unsigned int);
    CUresult (*driver_get_version)(int *);
    CUresult (*device_get_count)(int *);
    CUresult (*device_get)(CUdevice *, int);
    CUresult (*device_get_attribute)(int *, CUdevice_attribute, CUdevice);
    CUresult (*device_get_name)(char *, int, CUdevice);
    CUresult (*ctx_get_current)(CUcontext *);
    CUresult (*ctx_set_current)(CUcontext);
    CUresult (*ctx_get_device)(CUdevice *);
    CUresult (*ctx_synchronize)(void);
    CUresult (*primary_ctx_retain)(CUcontext *, CUdevice);
    CUresult (*primary_ctx_release)(CUdevice);
    CUresult (*library_load_data)(CUlibrary *, const void *, CUjit_option *, void **, unsigned int,
                                  CUlibraryOption *, void **, unsigned int);
    CUresult (*library_unload)(CUlibrary);
    CUresult (*library_get_kernel)(CUkernel *, CUlibrary, const char *);
    CUresult (*kernel_set_attribute)(CUfunction_attribute, int, CUkernel, CUdevice);
    CUresult (*kernel_get_attribute)(int *, CUfunction_attribute, CUkernel, CUdevice);
    CUresult (*launch_kernel)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int, unsigned int,
                              unsigned int, unsigned int, CUstream, void **, void **);
    /* Optional (NULL when the driver lacks it): programmatic dependent launch (mj_driver_pdl). */
    CUresult (*launch_kernel_ex)(const CUlaunchConfig *, CUfunction, void **, void **);
    CUresult (*stream_is_capturing)(CUstream, CUstreamCaptureStatus *);
    CUresult (*get_error_name)(CUresult, const char **);
    CUresult (*get_error_string)(CUresult, const char **);
    /* Used by tests, examples and benchmarks (not by the launch path). */
    CUresult (*mem_alloc)(CUdeviceptr *, size_t);
    CUresult (*mem_free)(CUdeviceptr);
    CUresult (*memcpy_htod)(CUdeviceptr, const void *, size_t);
    CUresult (*memcpy_dtoh)(void *, CUdeviceptr, size_t);
    CUresult (*memset_d8)(CUdeviceptr, unsigned char, size_t);
    CUresult (*stream_create)(CUstream *, unsigned int);
    CUresult (*stream_destroy)(CUstream);
    CUresult (*stream_synchronize)(CUstream);
    CUresult (*stream_begin_capture)(CUstream, CUstreamCaptureMode);
    CUresult (*stream_end_capture)(CUstream, CUgraph *);
    CUresult (*graph_instantiate)(CUgraphExec *, CUgraph, unsigned long long);
    CUresult (*graph_launch)(CUgraphExec, CUstream);
    CUresult (*graph_exec_destroy)(CUgraphExec);
    CUresult (*graph_destroy)(CUgraph);
    CUresult (*event_create)(CUevent *, unsigned int);
    CUresult (*event_record)(CUevent, CUstream);
    CUresult (*event_synchronize)(CUevent);
    CUresult (*event_elapsed_time)(float *, CUevent, CUevent);
    CUresult (*event_destroy)(CUevent);
    CUresult (*module_load_data)(CUmodule *, const void *);
    CUresult (*module_get_function)(CUfunction *, CUmodule, const char *);
    CUresult (*module_unload)(CUmodule);
} mj_driver;

/* The process-wide driver table. MOEJIT_ERR_NO_DRIVER (no libcuda.so.1, too old, cuInit failed)
 * or MOEJIT_ERR_NO_DEVICE (a driver but no GPU); the outcome is remembered, so later calls are cheap. */
moejit_status mj_driver_get(const mj_driver **out);

/* Format a failed driver call into the thread's error detail and return MOEJIT_ERR_CUDA
 * (or MOEJIT_ERR_NO_DEVICE for CUDA_ERROR_NO_DEVICE). */
moejit_status mj_cuda_fail(const mj_driver *d, CUresult r, const char *call, const char *detail);

/* Device of the calling thread's current context. With no current context, the primary context
 * of `fallback_ordinal` is retained and made current; *retained_ordinal is set to it (else -1)
 * so the caller can release it later. */
moejit_status mj_driver_current_device(const mj_driver *d, int fallback_ordinal, CUdevice *dev, int *retained_ordinal);

/* Compute capability as major*10+minor, e.g. 90. */
moejit_status mj_driver_device_cc(const mj_driver *d, CUdevice dev, int *cc);

/* Whether launches on a device of compute capability `cc` can use programmatic dependent launch
 * (cuLaunchKernelEx with CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION): sm_90 or newer,
 * and a 12.3 or newer driver that has cuLaunchKernelEx — 12.3 is the first whose graphs describe
 * programmatic dependencies natively, so captured launches keep them (docs/DESIGN.md §1). */
int mj_driver_pdl(const mj_driver *d, int cc);

/* NVRTC target for a compute capability: "sm_90a" for 9.0 and newer (arch-specific features),
 * "sm_86" below. */
void mj_arch_for_cc(int cc, char *buf, size_t cap);

#endif
