#include "jit/launch.h"

#include <stdint.h>

#include "jit/driver.h"
#include "common/error.h"

moejit_status mj_launch(moejit_ctx *ctx, const mj_kernel *k, int entry, int64_t blocks, void *params,
                        moejit_stream stream)
{
    const mj_driver *d;
    moejit_status st = mj_driver_get(&d); /* already loaded: mj_jit_kernel succeeded */
    if (st != MOEJIT_OK) return st;
    const mj_entry_plan *e = &k->plan.entry[entry];
    if (blocks > INT32_MAX) blocks = INT32_MAX;
    if (blocks < 1) blocks = 1;
    void *argv[] = {params};
    CUresult r = d->launch_kernel((CUfunction)k->kernels[entry], (unsigned)blocks, 1, 1, (unsigned)e->threads, 1, 1,
                                  (unsigned)e->smem_bytes, (CUstream)stream, argv, NULL);
    if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuLaunchKernel", e->name);
    atomic_fetch_add_explicit(&ctx->n_launches, 1, memory_order_relaxed);
    return MOEJIT_OK;
}

CUcontext mj_launch_context(void)
{
    const mj_driver *d;
    CUcontext c = NULL;
    if (mj_driver_get(&d) == MOEJIT_OK) d->ctx_get_current(&c);
    return c;
}
