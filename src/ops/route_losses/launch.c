/* moejit_route_losses: the checks, then a lookup (or the first use's build) and one launch of one
 * block (T == 0 too: it writes the zeros). */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "jit/launch.h"
#include "jit/loader.h"
#include "ops/route_losses/route_losses.h"

/* The calling thread's last call, as route keeps it: the same context, spec bytes and current
 * CUDA context reuse the validated shape and the kernel (the spec has no padding: memcmp compares
 * exactly its fields). */
typedef struct route_losses_memo {
    uint64_t ctx_serial;
    CUcontext cu;
    moejit_route_losses_spec spec;
    mj_route_losses_shape shape;
    const mj_kernel *kernel;
} route_losses_memo;

static _Thread_local route_losses_memo t_memo;

moejit_status moejit_route_losses(moejit_ctx *ctx, const moejit_route_losses_spec *spec,
                                    const moejit_route_losses_args *args, moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_route_losses: ctx is NULL");
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route_losses spec: spec is NULL");
    moejit_status st;
    mj_route_losses_params p;
    route_losses_memo *m = &t_memo;
    if (m->ctx_serial == ctx->serial && !memcmp(spec, &m->spec, sizeof *spec) && mj_launch_context() == m->cu) {
        if ((st = mj_route_losses_check_args(&m->shape, args, &p)) != MOEJIT_OK) return st;
        const mj_kernel *k = m->kernel;
        return mj_launch(ctx, k, 0, 1, &p, stream);
    }
    mj_route_losses_shape shape;
    if ((st = mj_route_losses_normalize(spec, &shape)) != MOEJIT_OK) return st;
    if ((st = mj_route_losses_check_args(&shape, args, &p)) != MOEJIT_OK) return st;

    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_route_losses, &shape, sizeof shape);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    *m = (route_losses_memo){ctx->serial, mj_launch_context(), *spec, shape, k};
    return mj_launch(ctx, k, 0, 1, &p, stream);
}
