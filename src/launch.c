#include "launch.h"

#include <stdint.h>

#include "driver.h"
#include "error.h"

moejit_status mj_check_device_ptr(const char *op, const char *name, const void *p, size_t align)
{
    if (!p) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: %s is NULL", op, name);
    if ((uintptr_t)p % align)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: %s = %p is not aligned to %zu bytes", op, name, p, align);
    return MOEJIT_OK;
}

moejit_status mj_launch(moejit_ctx *ctx, const mj_kernel *k, int64_t items, void *params, moejit_stream stream)
{
    const mj_driver *d;
    moejit_status st = mj_driver_get(&d); /* already loaded: mj_jit_kernel succeeded */
    if (st != MOEJIT_OK) return st;
    const int64_t per_block = k->plan.items_per_block;
    int64_t blocks = (items + per_block - 1) / per_block;
    if (blocks > INT32_MAX) blocks = INT32_MAX;
    void *argv[] = {params};
    CUresult r = d->launch_kernel((CUfunction)k->kernel, (unsigned)blocks, 1, 1, (unsigned)k->plan.threads, 1, 1,
                                  (unsigned)k->plan.smem_bytes, (CUstream)stream, argv, NULL);
    if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuLaunchKernel", k->plan.entry);
    atomic_fetch_add_explicit(&ctx->n_launches, 1, memory_order_relaxed);
    return MOEJIT_OK;
}
