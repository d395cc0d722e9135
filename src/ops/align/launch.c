/* moejit_align and its size helpers: argument checks, then lookup (or first-use build) and one
 * launch (a decode batch ranked by one warp, or onepass's grid), or three beyond onepass. */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "jit/launch.h"
#include "jit/loader.h"
#include "ops/align/align.h"

moejit_status mj_align_run(moejit_ctx *ctx, const mj_kernel *k, int first, const mj_align_layout *l,
                           const mj_align_params *p, moejit_stream stream)
{
    mj_align_params params = *p; /* the launch takes a non-const pointer */
    if (l->path == MJ_ALIGN_PATH_SMALL) return mj_launch(ctx, k, first + MJ_ALIGN_SMALL, 1, &params, stream);
    if (l->path == MJ_ALIGN_PATH_ONEPASS)
        return mj_launch(ctx, k, first + MJ_ALIGN_ONEPASS, l->blocks, &params, stream);
    moejit_status st = mj_launch(ctx, k, first + MJ_ALIGN_COUNT, l->tiles, &params, stream);
    if (st == MOEJIT_OK) st = mj_launch(ctx, k, first + MJ_ALIGN_SCAN, 1, &params, stream);
    if (st == MOEJIT_OK) st = mj_launch(ctx, k, first + MJ_ALIGN_SCATTER, l->blocks, &params, stream);
    return st;
}

/* The layout behind the size helpers: spec, then `out` (named `what` in the message), then sizes. */
static moejit_status sizes(const moejit_align_spec *spec, int64_t num_tokens, int32_t topk, const void *out,
                           const char *what, mj_align_layout *l)
{
    mj_align_shape a;
    moejit_status st = mj_align_normalize(spec, &a);
    if (st != MOEJIT_OK) return st;
    if (!out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    return mj_align_layout_for("align", a.experts, a.block_size, num_tokens, topk, spec->expert_capacity,
                               MJ_ALIGN_PATH_AUTO, l);
}

moejit_status moejit_align_capacity(const moejit_align_spec *spec, int64_t num_tokens, int32_t topk, int64_t *capacity)
{
    mj_error_clear();
    mj_align_layout l;
    moejit_status st = sizes(spec, num_tokens, topk, capacity, "moejit_align_capacity: capacity", &l);
    if (st == MOEJIT_OK) *capacity = l.capacity;
    return st;
}

moejit_status moejit_align_workspace_bytes(const moejit_align_spec *spec, int64_t num_tokens, int32_t topk,
                                           size_t *bytes)
{
    mj_error_clear();
    mj_align_layout l;
    moejit_status st = sizes(spec, num_tokens, topk, bytes, "moejit_align_workspace_bytes: bytes", &l);
    if (st == MOEJIT_OK) *bytes = l.ws_bytes;
    return st;
}

moejit_status moejit_align(moejit_ctx *ctx, const moejit_align_spec *spec, const moejit_align_args *args,
                           moejit_stream stream)
{
    return mj_align_launch(ctx, spec, args, MJ_ALIGN_PATH_AUTO, stream);
}

moejit_status mj_align_launch(moejit_ctx *ctx, const moejit_align_spec *spec, const moejit_align_args *args, int path,
                              moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_align: ctx is NULL");
    mj_align_shape a;
    mj_align_layout l;
    mj_align_params p;
    moejit_status st = mj_align_check_call(spec, args, 1, path, &a, &l, &p);
    if (st != MOEJIT_OK || !mj_align_wants_output(&p)) return st;
    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_align, &a, sizeof a);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    return mj_align_run(ctx, k, 0, &l, &p, stream);
}
