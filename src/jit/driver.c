#include "jit/driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/error.h"

/* The ABI we resolve symbols at: every entry point we use exists with this signature since 12.0. */
#define MJ_DRIVER_ABI 12000

static mj_driver g_driver;
static moejit_status g_status;
static char g_error[512];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

typedef CUresult (*get_proc_fn)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);

static void load_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        g_status = MOEJIT_ERR_NO_DRIVER;
        snprintf(g_error, sizeof g_error, "no CUDA driver: dlopen(\"libcuda.so.1\") failed: %s", dlerror());
        return;
    }
    get_proc_fn get_proc = (get_proc_fn)dlsym(h, "cuGetProcAddress_v2");
    if (!get_proc) {
        g_status = MOEJIT_ERR_NO_DRIVER;
        snprintf(g_error, sizeof g_error, "the CUDA driver is too old: libcuda.so.1 has no cuGetProcAddress_v2 "
                                          "(a 12.0 or newer driver is required)");
        return;
    }
    mj_driver *d = &g_driver;
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&d->init, "cuInit"},
        {(void **)&d->driver_get_version, "cuDriverGetVersion"},
        {(void **)&d->device_get_count, "cuDeviceGetCount"},
        {(void **)&d->device_get, "cuDeviceGet"},
        {(void **)&d->device_get_attribute, "cuDeviceGetAttribute"},
        {(void **)&d->device_get_name, "cuDeviceGetName"},
        {(void **)&d->ctx_get_current, "cuCtxGetCurrent"},
        {(void **)&d->ctx_set_current, "cuCtxSetCurrent"},
        {(void **)&d->ctx_get_device, "cuCtxGetDevice"},
        {(void **)&d->ctx_synchronize, "cuCtxSynchronize"},
        {(void **)&d->primary_ctx_retain, "cuDevicePrimaryCtxRetain"},
        {(void **)&d->primary_ctx_release, "cuDevicePrimaryCtxRelease"},
        {(void **)&d->library_load_data, "cuLibraryLoadData"},
        {(void **)&d->library_unload, "cuLibraryUnload"},
        {(void **)&d->library_get_kernel, "cuLibraryGetKernel"},
        {(void **)&d->kernel_set_attribute, "cuKernelSetAttribute"},
        {(void **)&d->kernel_get_attribute, "cuKernelGetAttribute"},
        {(void **)&d->launch_kernel, "cuLaunchKernel"},
        {(void **)&d->stream_is_capturing, "cuStreamIsCapturing"},
        {(void **)&d->get_error_name, "cuGetErrorName"},
        {(void **)&d->get_error_string, "cuGetErrorString"},
        {(void **)&d->mem_alloc, "cuMemAlloc"},
        {(void **)&d->mem_free, "cuMemFree"},
        {(void **)&d->memcpy_htod, "cuMemcpyHtoD"},
        {(void **)&d->memcpy_dtoh, "cuMemcpyDtoH"},
        {(void **)&d->memset_d8, "cuMemsetD8"},
        {(void **)&d->stream_create, "cuStreamCreate"},
        {(void **)&d->stream_destroy, "cuStreamDestroy"},
        {(void **)&d->stream_synchronize, "cuStreamSynchronize"},
        {(void **)&d->stream_begin_capture, "cuStreamBeginCapture"},
        {(void **)&d->stream_end_capture, "cuStreamEndCapture"},
        {(void **)&d->graph_instantiate, "cuGraphInstantiateWithFlags"},
        {(void **)&d->graph_launch, "cuGraphLaunch"},
        {(void **)&d->graph_exec_destroy, "cuGraphExecDestroy"},
        {(void **)&d->graph_destroy, "cuGraphDestroy"},
        {(void **)&d->event_create, "cuEventCreate"},
        {(void **)&d->event_record, "cuEventRecord"},
        {(void **)&d->event_synchronize, "cuEventSynchronize"},
        {(void **)&d->event_elapsed_time, "cuEventElapsedTime"},
        {(void **)&d->event_destroy, "cuEventDestroy"},
        {(void **)&d->module_load_data, "cuModuleLoadData"},
        {(void **)&d->module_get_function, "cuModuleGetFunction"},
        {(void **)&d->module_unload, "cuModuleUnload"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        CUdriverProcAddressQueryResult q;
        if (get_proc(syms[i].name, syms[i].slot, MJ_DRIVER_ABI, CU_GET_PROC_ADDRESS_DEFAULT, &q) != CUDA_SUCCESS ||
            !*syms[i].slot) {
            g_status = MOEJIT_ERR_NO_DRIVER;
            snprintf(g_error, sizeof g_error, "the CUDA driver has no %s (a 12.0 or newer driver is required)",
                     syms[i].name);
            return;
        }
    }
    /* Optional entry points: a driver without them still serves, without the feature. */
    struct {
        void **slot;
        const char *name;
    } optional[] = {
        {(void **)&d->launch_kernel_ex, "cuLaunchKernelEx"},
    };
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        CUdriverProcAddressQueryResult q;
        if (get_proc(optional[i].name, optional[i].slot, MJ_DRIVER_ABI, CU_GET_PROC_ADDRESS_DEFAULT, &q) !=
            CUDA_SUCCESS)
            *optional[i].slot = NULL;
    }
    CUresult r = d->init(0);
    if (r != CUDA_SUCCESS) {
        const char *name = "?";
        d->get_error_name(r, &name);
        g_status = r == CUDA_ERROR_NO_DEVICE ? MOEJIT_ERR_NO_DEVICE : MOEJIT_ERR_NO_DRIVER;
        snprintf(g_error, sizeof g_error, "cuInit failed: %s (%d)%s", name, (int)r,
                 r == CUDA_ERROR_NO_DEVICE ? ": no CUDA device is visible" : "");
        return;
    }
    int count = 0;
    if (d->device_get_count(&count) != CUDA_SUCCESS || count == 0) {
        g_status = MOEJIT_ERR_NO_DEVICE;
        snprintf(g_error, sizeof g_error, "the CUDA driver sees no device");
        return;
    }
    d->driver_get_version(&d->version);
    g_status = MOEJIT_OK;
}

moejit_status mj_driver_get(const mj_driver **out)
{
    pthread_once(&g_once, load_driver);
    if (g_status != MOEJIT_OK) {
        *out = NULL;
        return mj_fail(g_status, "%s", g_error);
    }
    *out = &g_driver;
    return MOEJIT_OK;
}

moejit_status mj_cuda_fail(const mj_driver *d, CUresult r, const char *call, const char *detail)
{
    const char *name = "?", *text = "?";
    if (d) {
        d->get_error_name(r, &name);
        d->get_error_string(r, &text);
    }
    return mj_fail(r == CUDA_ERROR_NO_DEVICE ? MOEJIT_ERR_NO_DEVICE : MOEJIT_ERR_CUDA, "%s failed: %s (%d): %s%s%s", call,
                   name, (int)r, text, detail && *detail ? "; " : "", detail ? detail : "");
}

moejit_status mj_driver_current_device(const mj_driver *d, int fallback_ordinal, CUdevice *dev, int *retained_ordinal)
{
    *retained_ordinal = -1;
    /* Ask for the current context first: cuCtxGetDevice without one "fails", which is not an error
     * here and should not look like one to compute-sanitizer or API traces. */
    CUcontext current = NULL;
    if (d->ctx_get_current(&current) == CUDA_SUCCESS && current && d->ctx_get_device(dev) == CUDA_SUCCESS)
        return MOEJIT_OK;
    /* No current context: adopt the primary context, as the runtime API would. */
    CUdevice fallback;
    CUresult r = d->device_get(&fallback, fallback_ordinal);
    if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuDeviceGet", "moejit_config.device names no device");
    CUcontext primary;
    r = d->primary_ctx_retain(&primary, fallback);
    if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuDevicePrimaryCtxRetain", NULL);
    r = d->ctx_set_current(primary);
    if (r != CUDA_SUCCESS) {
        d->primary_ctx_release(fallback);
        return mj_cuda_fail(d, r, "cuCtxSetCurrent", NULL);
    }
    *retained_ordinal = fallback_ordinal;
    *dev = fallback;
    return MOEJIT_OK;
}

moejit_status mj_driver_device_cc(const mj_driver *d, CUdevice dev, int *cc)
{
    int major = 0, minor = 0;
    CUresult r = d->device_get_attribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    if (r == CUDA_SUCCESS) r = d->device_get_attribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuDeviceGetAttribute(compute capability)", NULL);
    *cc = major * 10 + minor;
    return MOEJIT_OK;
}

int mj_driver_pdl(const mj_driver *d, int cc)
{
    return d && d->launch_kernel_ex && d->version >= 12030 && cc >= 90;
}

void mj_arch_for_cc(int cc, char *buf, size_t cap) { snprintf(buf, cap, "sm_%d%s", cc, cc >= 90 ? "a" : ""); }
