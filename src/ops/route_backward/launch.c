/* moejit_route_backward: the checks, then a lookup (or the first use's build) and one launch. */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "jit/launch.h"
#include "jit/loader.h"
#include "ops/route_backward/route_backward.h"

/* The calling thread's last call, as route keeps it: the same context, spec bytes and current
 * CUDA context reuse the validated shape and the kernel (the spec has no padding: memcmp compares
 * exactly its fields). */
typedef struct route_backward_memo {
    uint64_t ctx_serial;
    CUcontext cu;
    moejit_route_backward_spec spec;
    mj_route_backward_shape shape;
    const mj_kernel *kernel;
} route_backward_memo;

static _Thread_local route_backward_memo t_memo;

moejit_status moejit_route_backward(moejit_ctx *ctx, const moejit_route_backward_spec *spec,
                                    const moejit_route_backward_args *args, moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_route_backward: ctx is NULL");
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route_backward spec: spec is NULL");
    moejit_status st;
    mj_route_backward_params p;
    route_backward_memo *m = &t_memo;
    if (m->ctx_serial == ctx->serial && !memcmp(spec, &m->spec, sizeof *spec) && mj_launch_context() == m->cu) {
        if ((st = mj_route_backward_check_args(&m->shape, args, &p)) != MOEJIT_OK) return st;
        if (args->num_tokens == 0) return MOEJIT_OK;
        const mj_kernel *k = m->kernel;
        return mj_launch(ctx, k, 0, mj_blocks_for(args->num_tokens, k->plan.entry[0].items_per_block), &p, stream);
    }
    mj_route_backward_shape shape;
    if ((st = mj_route_backward_normalize(spec, &shape)) != MOEJIT_OK) return st;
    if ((st = mj_route_backward_check_args(&shape, args, &p)) != MOEJIT_OK) return st;
    if (args->num_tokens == 0) return MOEJIT_OK;

    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_route_backward, &shape, sizeof shape);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    *m = (route_backward_memo){ctx->serial, mj_launch_context(), *spec, shape, k};
    return mj_launch(ctx, k, 0, mj_blocks_for(args->num_tokens, k->plan.entry[0].items_per_block), &p, stream);
}
