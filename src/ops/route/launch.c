/* moejit_route: the checks, then a lookup (or the first use's build) and one launch. */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "jit/loader.h"
#include "jit/launch.h"
#include "ops/route/route.h"

/* The calling thread's last route: a call with the same context, the same spec bytes and the same
 * current CUDA context reuses its validated shape and kernel — no normalisation, no device query,
 * no hash, no probe. (moejit_route_spec has no padding, so memcmp compares exactly its fields.) */
typedef struct route_memo {
    uint64_t ctx_serial;
    CUcontext cu;
    moejit_route_spec spec;
    mj_route_shape shape;
    const mj_kernel *kernel;
} route_memo;

static _Thread_local route_memo t_memo;

static moejit_status launch(moejit_ctx *ctx, const mj_kernel *k, const mj_route_shape *shape, int64_t tokens,
                            mj_route_params *p, moejit_stream stream)
{
    int64_t blocks;
    const int entry = mj_route_launch_for(shape, tokens, &blocks);
    return mj_launch(ctx, k, entry, blocks, p, stream);
}

moejit_status moejit_route(moejit_ctx *ctx, const moejit_route_spec *spec, const moejit_route_args *args,
                           moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_route: ctx is NULL");
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route spec: spec is NULL");
    moejit_status st;
    mj_route_params p;
    route_memo *m = &t_memo;
    if (m->ctx_serial == ctx->serial && !memcmp(spec, &m->spec, sizeof *spec) && mj_launch_context() == m->cu) {
        if ((st = mj_route_check_args("route", &m->shape, args, &p)) != MOEJIT_OK) return st;
        if (args->num_tokens == 0) return MOEJIT_OK;
        return launch(ctx, m->kernel, &m->shape, args->num_tokens, &p, stream);
    }
    mj_route_shape shape;
    if ((st = mj_route_normalize(spec, &shape)) != MOEJIT_OK) return st;
    if ((st = mj_route_check_args("route", &shape, args, &p)) != MOEJIT_OK) return st;
    if (args->num_tokens == 0) return MOEJIT_OK;

    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_route, &shape, sizeof shape);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    *m = (route_memo){ctx->serial, mj_launch_context(), *spec, shape, k};
    return launch(ctx, k, &shape, args->num_tokens, &p, stream);
}
