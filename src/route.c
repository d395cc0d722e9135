/* moejit_route: argument checks, then lookup (or first-use build) and one launch. */
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "launch.h"
#include "route_launch.h"

moejit_status mj_route_check_args(const char *op, const mj_route_shape *r, const moejit_route_args *a,
                                  mj_route_params *p)
{
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: args is NULL", op);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("route args", a)) != MOEJIT_OK) return st;
    if (a->num_tokens < 0)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld must be >= 0", op,
                       (long long)a->num_tokens);
    const int64_t stride = a->row_stride ? a->row_stride : r->experts;
    if (stride < r->experts)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: row_stride = %lld is smaller than num_experts = %d", op,
                       (long long)a->row_stride, r->experts);
    const int elem = mj_dtype_bytes(r->dtype);
    int64_t bytes; /* a checked multiply: no division on the launch path */
    if (__builtin_mul_overflow(a->num_tokens, stride * elem, &bytes))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld with row_stride = %lld overflows", op,
                       (long long)a->num_tokens, (long long)stride);
    *p = (mj_route_params){
        .logits = a->logits,
        .bias = r->has_bias ? a->bias : NULL,
        .ids = a->ids,
        .weights = a->weights,
        .num_tokens = a->num_tokens,
        .row_stride = stride,
    };
    if (a->num_tokens == 0) return MOEJIT_OK; /* empty batch: pointers may be NULL, nothing runs */
    if ((st = mj_check_device_ptr(op, "logits", a->logits, (size_t)elem)) != MOEJIT_OK) return st;
    if ((st = mj_check_device_ptr(op, "ids", a->ids, 4)) != MOEJIT_OK) return st;
    if ((st = mj_check_device_ptr(op, "weights", a->weights, 4)) != MOEJIT_OK) return st;
    if (r->has_bias && (st = mj_check_device_ptr(op, "bias (spec.has_bias = 1)", a->bias, 4)) != MOEJIT_OK)
        return st;
    return MOEJIT_OK;
}

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
        const mj_kernel *k = m->kernel;
        return mj_launch(ctx, k, 0, mj_blocks_for(args->num_tokens, k->plan.entry[0].items_per_block), &p, stream);
    }
    mj_kernel_id id;
    memset(&id, 0, sizeof id);
    id.op = MOEJIT_OP_ROUTE;
    st = mj_route_normalize(spec, &id.u.route);
    if (st != MOEJIT_OK) return st;
    if ((st = mj_route_check_args("route", &id.u.route, args, &p)) != MOEJIT_OK) return st;
    if (args->num_tokens == 0) return MOEJIT_OK;

    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    *m = (route_memo){ctx->serial, mj_launch_context(), *spec, id.u.route, k};
    return mj_launch(ctx, k, 0, mj_blocks_for(args->num_tokens, k->plan.entry[0].items_per_block), &p, stream);
}
