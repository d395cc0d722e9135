/* moejit_align and its size helpers: argument checks, then lookup (or first-use build) and one
 * launch (a decode batch ranked by one warp, or a tile by the block), or three beyond a tile. */
#include <stdint.h>
#include <string.h>

#include "align_launch.h"
#include "error.h"
#include "launch.h"

/* One launch takes a batch of up to a tile of ids whose capacity is at most this: beyond it, the
 * padding alone is worth spreading over a grid. */
#define SINGLE_MAX_CAPACITY 131072

moejit_status mj_align_layout_for(const char *op, int experts, int block_size, int64_t num_tokens, int64_t topk,
                                  mj_align_layout *out)
{
    memset(out, 0, sizeof *out);
    if (num_tokens < 0)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld must be >= 0", op, (long long)num_tokens);
    if (topk < 1) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: topk = %lld must be >= 1", op, (long long)topk);
    if (num_tokens > INT32_MAX / topk)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                       "%s args: num_tokens = %lld × topk = %lld ids exceed %d (positions are int32)", op,
                       (long long)num_tokens, (long long)topk, INT32_MAX);
    const int64_t n = num_tokens * topk;
    const int64_t used = n < experts ? n : experts; /* experts that can have rows */
    out->n = n;
    out->capacity = n + used * (block_size - 1);
    if (out->capacity > INT32_MAX)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                       "%s args: %lld ids over %d experts can need %lld padded rows, more than %d (positions are "
                       "int32)", op, (long long)n, experts, (long long)out->capacity, INT32_MAX);
    mj_align_geom g;
    mj_align_geom_default(experts, block_size, &g);
    out->multi = !(n <= g.tile && out->capacity <= SINGLE_MAX_CAPACITY);
    out->small = !out->multi && g.small_ids > 0 && n <= g.small_ids;
    if (out->multi) {
        out->tiles = (int)((n + g.tile - 1) / g.tile);
        /* tile prefixes [P][E], counts [E], offsets [E+1], padding starts [E] (align.cuh) */
        out->ws_bytes = 4 * ((size_t)out->tiles * (size_t)experts + 3 * (size_t)experts + 1);
        /* Every warp of the scatter grid fills (padding, block_expert) at most one window of 32
         * experts, so the grid has at least that many warps, whatever the number of tiles. */
        const int fill_blocks = ((experts + 31) / 32 + g.threads / 32 - 1) / (g.threads / 32);
        out->scatter_blocks = out->tiles > fill_blocks ? out->tiles : fill_blocks;
    }
    return MOEJIT_OK;
}

/* An optional int32 output: NULL is fine, a misaligned pointer is not. */
static moejit_status check_optional(const char *op, const char *name, const void *p)
{
    return p ? mj_check_device_ptr(op, name, p, 4) : MOEJIT_OK;
}

moejit_status mj_align_check_outputs(const char *op, const mj_align_layout *l, const int32_t *ids,
                                     const moejit_align_outputs *o, int check_workspace, mj_align_params *p)
{
    memset(p, 0, sizeof *p);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("align outputs", o)) != MOEJIT_OK) return st;
    if (l->n > 0 && (st = mj_check_device_ptr(op, "ids", ids, 4)) != MOEJIT_OK) return st;
    if ((st = check_optional(op, "counts", o->counts)) != MOEJIT_OK ||
        (st = check_optional(op, "offsets", o->offsets)) != MOEJIT_OK ||
        (st = check_optional(op, "sorted_ids", o->sorted_ids)) != MOEJIT_OK ||
        (st = check_optional(op, "block_expert", o->block_expert)) != MOEJIT_OK ||
        (st = check_optional(op, "total_padded", o->total_padded)) != MOEJIT_OK ||
        (st = check_optional(op, "slot_of", o->slot_of)) != MOEJIT_OK)
        return st;
    int64_t cap = o->sorted_capacity ? o->sorted_capacity : l->capacity;
    if (cap < l->capacity)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "%s args: sorted_capacity = %lld is smaller than the %lld entries %lld ids can need "
                       "(moejit_align_capacity)", op, (long long)o->sorted_capacity, (long long)l->capacity,
                       (long long)l->n);
    if (cap > INT32_MAX) cap = INT32_MAX; /* positions are int32: nothing is ever placed beyond */
    const int wanted = o->counts || o->offsets || o->sorted_ids || o->block_expert || o->total_padded || o->slot_of;
    if (check_workspace && l->multi && wanted) {
        if (o->workspace_bytes < l->ws_bytes)
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                           "%s args: workspace_bytes = %zu is smaller than the %zu bytes a batch of %lld ids needs "
                           "(moejit_align_workspace_bytes)", op, o->workspace_bytes, l->ws_bytes, (long long)l->n);
        if ((st = mj_check_device_ptr(op, "workspace", o->workspace, 4)) != MOEJIT_OK) return st;
    }
    p->ids = ids;
    p->n = (int32_t)l->n;
    p->capacity = (int32_t)cap;
    p->counts = o->counts;
    p->offsets = o->offsets;
    p->sorted_ids = o->sorted_ids;
    p->block_expert = o->block_expert;
    p->total_padded = o->total_padded;
    p->slot_of = o->slot_of;
    p->ws = l->multi ? o->workspace : NULL;
    p->num_tiles = l->tiles;
    return MOEJIT_OK;
}

moejit_status mj_align_check_args_reserved(const moejit_align_args *a)
{
    moejit_status st = mj_check_reserved("align args", "reserved0", &a->reserved0, 1, sizeof a->reserved0);
    return st == MOEJIT_OK ? MJ_CHECK_RESERVED("align args", a) : st;
}

int mj_align_wants_output(const mj_align_params *p)
{
    return p->counts || p->offsets || p->sorted_ids || p->block_expert || p->total_padded || p->slot_of;
}

moejit_status mj_align_run(moejit_ctx *ctx, const mj_kernel *k, int first, const mj_align_layout *l,
                           const mj_align_params *p, moejit_stream stream)
{
    mj_align_params params = *p; /* the launch takes a non-const pointer */
    if (l->small) return mj_launch(ctx, k, first + MJ_ALIGN_SMALL, 1, &params, stream);
    if (!l->multi) return mj_launch(ctx, k, first + MJ_ALIGN_SINGLE, 1, &params, stream);
    moejit_status st = mj_launch(ctx, k, first + MJ_ALIGN_COUNT, l->tiles, &params, stream);
    if (st == MOEJIT_OK) st = mj_launch(ctx, k, first + MJ_ALIGN_SCAN, 1, &params, stream);
    if (st == MOEJIT_OK) st = mj_launch(ctx, k, first + MJ_ALIGN_SCATTER, l->scatter_blocks, &params, stream);
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
    return mj_align_layout_for("align", a.experts, a.block_size, num_tokens, topk, l);
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
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_align: ctx is NULL");
    mj_kernel_id id;
    memset(&id, 0, sizeof id);
    id.op = MOEJIT_OP_ALIGN;
    moejit_status st = mj_align_normalize(spec, &id.u.align);
    if (st != MOEJIT_OK) return st;
    if (!args) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "align args: args is NULL");
    if ((st = mj_align_check_args_reserved(args)) != MOEJIT_OK) return st;
    const mj_align_shape *a = &id.u.align;
    mj_align_layout l;
    mj_align_params p;
    if ((st = mj_align_layout_for("align", a->experts, a->block_size, args->num_tokens, args->topk, &l)) != MOEJIT_OK ||
        (st = mj_align_check_outputs("align", &l, args->ids, &args->out, 1, &p)) != MOEJIT_OK)
        return st;
    if (!mj_align_wants_output(&p)) return MOEJIT_OK;
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    return mj_align_run(ctx, k, 0, &l, &p, stream);
}
