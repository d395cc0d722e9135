/* moejit_route_align: route's and align's argument checks, then one launch of the fused kernel (a
 * cluster of blocks on sm_90+), or (beyond its token limit) route's kernel and align's launches
 * from the same module. */
#include <string.h>

#include "common/error.h"
#include "jit/launch.h"
#include "jit/loader.h"
#include "ops/route_align/route_align.h"


/* align's layout of a batch of T tokens for the fallback (align over E+S experts and K+S ids a
 * token). It needs no workspace up to the fused kernel's limit either: align's one-launch paths
 * take every batch up to 64·(64+64) ids, so the size helpers hold whichever path runs. */
static moejit_status batch_layout(const mj_route_align_shape *s, int64_t num_tokens, mj_align_layout *l)
{
    const mj_route_shape *r = &s->route;
    return mj_align_layout_for("route_align", mj_route_id_space(r), s->block_size, num_tokens,
                               r->topk + r->shared_slots, 0, MJ_ALIGN_PATH_AUTO, l);
}

/* The shape and batch layout behind the size helpers; `out` is named `what` in the message. */
static moejit_status sizes(const moejit_route_align_spec *spec, int64_t num_tokens, const void *out, const char *what,
                           mj_route_align_shape *s, mj_align_layout *l)
{
    moejit_status st = mj_route_align_normalize(spec, s);
    if (st != MOEJIT_OK) return st;
    if (!out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    return batch_layout(s, num_tokens, l);
}

moejit_status moejit_route_align_capacity(const moejit_route_align_spec *spec, int64_t num_tokens, int64_t *capacity)
{
    mj_error_clear();
    mj_route_align_shape s;
    mj_align_layout l;
    moejit_status st = sizes(spec, num_tokens, capacity, "moejit_route_align_capacity: capacity", &s, &l);
    if (st == MOEJIT_OK) *capacity = l.capacity;
    return st;
}

moejit_status moejit_route_align_workspace_bytes(const moejit_route_align_spec *spec, int64_t num_tokens, size_t *bytes)
{
    mj_error_clear();
    mj_route_align_shape s;
    mj_align_layout l;
    moejit_status st = sizes(spec, num_tokens, bytes, "moejit_route_align_workspace_bytes: bytes", &s, &l);
    if (st == MOEJIT_OK) *bytes = l.ws_bytes;
    return st;
}

moejit_status moejit_route_align_fused_tokens(const moejit_route_align_spec *spec, int64_t *tokens)
{
    mj_error_clear();
    mj_route_align_shape s;
    mj_align_layout l;
    moejit_status st = sizes(spec, 0, tokens, "moejit_route_align_fused_tokens: tokens", &s, &l);
    if (st != MOEJIT_OK) return st;
    mj_route_align_fused f;
    mj_route_align_fused_for(&s, &f);
    *tokens = f.max_tokens;
    return MOEJIT_OK;
}

moejit_status moejit_route_align(moejit_ctx *ctx, const moejit_route_align_spec *spec,
                                 const moejit_route_align_args *args, moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_route_align: ctx is NULL");
    mj_route_align_shape shape;
    moejit_status st = mj_route_align_normalize(spec, &shape);
    if (st != MOEJIT_OK) return st;
    if (!args) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route_align args: args is NULL");
    if ((st = MJ_CHECK_RESERVED("route_align args", args)) != MOEJIT_OK) return st;
    const mj_route_align_shape *s = &shape;
    mj_route_align_params p;
    mj_align_layout l;
    if ((st = mj_route_check_args("route_align", &s->route, &args->route, &p.route)) != MOEJIT_OK ||
        (st = batch_layout(s, args->route.num_tokens, &l)) != MOEJIT_OK ||
        (st = mj_align_check_outputs("route_align", &l, args->route.ids, mj_route_align_fallback_shape(s).id_dtype,
                                     &args->align, 1, &p.align)) != MOEJIT_OK)
        return st;
    const int64_t tokens = args->route.num_tokens;
    if (tokens == 0 && !mj_align_wants_output(&p.align)) return MOEJIT_OK;

    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_route_align, &shape, sizeof shape);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    /* One launch up to the limit on a cluster (sm_90+), else up to what one block routes. */
    mj_route_align_fused f;
    mj_route_align_fused_for(s, &f);
    const int clusters = mj_launch_clusters(k);
    const int limit = clusters ? f.max_tokens : f.block_tokens;
    if (limit > 0 && tokens <= limit)
        return mj_launch_cluster(ctx, k, MJ_RA_FUSED, mj_route_align_fused_blocks(tokens, clusters), &p, stream);
    st = mj_launch(ctx, k, MJ_RA_ROUTE, mj_blocks_for(tokens, k->plan.entry[MJ_RA_ROUTE].items_per_block), &p.route,
                   stream);
    return st == MOEJIT_OK ? mj_align_run(ctx, k, MJ_RA_ALIGN, &l, &p.align, stream) : st;
}
