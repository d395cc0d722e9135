#include "jit/launch.h"

#include <stdint.h>

#include "jit/driver.h"
#include "common/error.h"

/* Launch with up to two attributes: PDL (k->pdl) and, for cluster > 1, the grid as clusters of
 * `cluster` blocks (only where mj_launch_clusters(k)). */
static moejit_status launch(moejit_ctx *ctx, const mj_kernel *k, int entry, int64_t blocks, void *params,
                            moejit_stream stream, int cluster)
{
    const mj_driver *d;
    moejit_status st = mj_driver_get(&d); /* already loaded: mj_jit_kernel succeeded */
    if (st != MOEJIT_OK) return st;
    const mj_entry_plan *e = &k->plan.entry[entry];
    if (blocks > INT32_MAX) blocks = INT32_MAX;
    if (blocks < 1) blocks = 1;
    void *argv[] = {params};
    CUresult r;
    if (k->pdl || cluster > 1) {
        /* Programmatic dependent launch (decided when the kernel was registered: mj_driver_pdl and
         * moejit_config.pdl): this grid may be scheduled before the previous kernel on the stream
         * has finished; every entry point waits for it (griddepcontrol.wait in mj::pdl_begin,
         * kernel_templates/common.cuh) before it reads or writes memory. */
        CUlaunchAttribute attrs[2];
        unsigned n = 0;
        if (k->pdl) {
            attrs[n] = (CUlaunchAttribute){.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION};
            attrs[n++].value.programmaticStreamSerializationAllowed = 1;
        }
        if (cluster > 1) {
            attrs[n] = (CUlaunchAttribute){.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION};
            attrs[n].value.clusterDim.x = (unsigned)cluster;
            attrs[n].value.clusterDim.y = 1;
            attrs[n++].value.clusterDim.z = 1;
        }
        const CUlaunchConfig cfg = {.gridDimX = (unsigned)blocks, .gridDimY = 1, .gridDimZ = 1,
                                    .blockDimX = (unsigned)e->threads, .blockDimY = 1, .blockDimZ = 1,
                                    .sharedMemBytes = (unsigned)e->smem_bytes, .hStream = (CUstream)stream,
                                    .attrs = attrs, .numAttrs = n};
        r = d->launch_kernel_ex(&cfg, (CUfunction)k->kernels[entry], argv, NULL);
        if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuLaunchKernelEx", e->name);
    } else {
        r = d->launch_kernel((CUfunction)k->kernels[entry], (unsigned)blocks, 1, 1, (unsigned)e->threads, 1, 1,
                             (unsigned)e->smem_bytes, (CUstream)stream, argv, NULL);
        if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuLaunchKernel", e->name);
    }
    atomic_fetch_add_explicit(&ctx->n_launches, 1, memory_order_relaxed);
    return MOEJIT_OK;
}

moejit_status mj_launch(moejit_ctx *ctx, const mj_kernel *k, int entry, int64_t blocks, void *params,
                        moejit_stream stream)
{
    return launch(ctx, k, entry, blocks, params, stream, 1);
}

int mj_launch_clusters(const mj_kernel *k)
{
    const mj_driver *d;
    return k->lookup.cc >= 90 && mj_driver_get(&d) == MOEJIT_OK && d->launch_kernel_ex;
}

moejit_status mj_launch_cluster(moejit_ctx *ctx, const mj_kernel *k, int entry, int blocks, void *params,
                                moejit_stream stream)
{
    return launch(ctx, k, entry, blocks, params, stream, blocks);
}

CUcontext mj_launch_context(void)
{
    const mj_driver *d;
    CUcontext c = NULL;
    if (mj_driver_get(&d) == MOEJIT_OK) d->ctx_get_current(&c);
    return c;
}
