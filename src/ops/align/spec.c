/* align's spec and arguments: validation and normalisation, the geometry of its kernels, the
 * layout of a batch (its path, decided from sizes alone so launches are capturable), and the
 * argument checks the launch and the reference share. */
#include "ops/align/align.h"

#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"

enum {
    ALIGN_THREADS = 512,
    ALIGN_TILE = 4096, /* ids a block ranks at once (shared memory holds a tile's rank codes) */
    /* onepass ranks at most this many ids a block: past it the grid grows instead, which costs
     * little below MJ_ALIGN_ONEPASS_MAX_IDS (at most 32 blocks, each reading the batch anyway)
     * and keeps each block's ranking (run / 32 match_any steps a warp) short. */
    ALIGN_ONEPASS_TILE = 2048,
    /* onepass fills padding and block_expert with a warp an expert (fill()), on up to this many
     * blocks: every block reads all the ids, so wider expert sets (E > 512) give a warp more. */
    ALIGN_ONEPASS_FILL_BLOCKS = 32,
    /* Each counting warp keeps a histogram row of E ints: 16 warps up to E = 1024, 4 at 4096. */
    ALIGN_HIST_BUDGET = 64 * 1024,
    /* The small path ranks on one warp, 32 ids a step, one step after another: up to this many
     * ids it beats the counting warps' histograms (bench_ops, BENCHMARKS.md). */
    ALIGN_SMALL_IDS = 128,
    /* A lane of the small path's ranking warp scans a run of E/32 counts. */
    ALIGN_SMALL_MAX_EXPERTS = 1024,
};

#define SPEC_ERR(status, ...) mj_fail(status, "align spec: " __VA_ARGS__)

moejit_status mj_align_check_block(const char *spec_name, int b)
{
    if (b < MOEJIT_ALIGN_MIN_BLOCK || b > MOEJIT_ALIGN_MAX_BLOCK || (b & (b - 1)))
        return mj_fail(MOEJIT_ERR_INVALID_SPEC, "%s: block_size = %d must be a power of two in [%d, %d]", spec_name, b,
                       MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK);
    return MOEJIT_OK;
}

moejit_status mj_align_normalize(const moejit_align_spec *spec, mj_align_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "align spec: spec is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("align spec", spec);
    if (st != MOEJIT_OK) return st;
    const int e = spec->num_experts, b = spec->block_size;
    if (e < 1) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_experts = %d must be >= 1", e);
    if (e > MOEJIT_MAX_ALIGN_EXPERTS)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "num_experts = %d exceeds the maximum %d", e, MOEJIT_MAX_ALIGN_EXPERTS);
    st = mj_align_check_block("align spec", b);
    if (st != MOEJIT_OK) return st;
    if (!mj_index_dtype_name((int)spec->id_dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "id_dtype = %d is not a moejit_index_dtype (0 int32, 1 int64, 2 int16)",
                        (int)spec->id_dtype);
    const int eg = spec->global_experts;
    if (eg < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "global_experts = %d must be >= 0 (0: no expert map)", eg);
    if (eg > MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "global_experts = %d exceeds the maximum %d", eg,
                        MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS);
    if (spec->expert_capacity < 0)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "expert_capacity = %d must be >= 0 (0: no padding to capacity)",
                        spec->expert_capacity);
    out->experts = e;
    out->block_size = b;
    out->id_dtype = (int32_t)spec->id_dtype;
    out->global_experts = eg;
    return MOEJIT_OK;
}

void mj_align_geom_make(int experts, int block_size, int threads, int hist_budget, int tile, int small_ids,
                        mj_align_geom *g)
{
    g->experts = experts;
    g->block_size = block_size;
    g->id_dtype = MOEJIT_INDEX_INT32;
    g->global_experts = 0;
    g->threads = threads;
    g->count_warps = threads / 32;
    while (g->count_warps > 1 && (long)g->count_warps * experts * 4 > hist_budget) g->count_warps /= 2;
    g->tile = tile;
    g->expert_bits = 1;
    while ((1 << g->expert_bits) < experts) g->expert_bits++;
    g->small_ids = experts <= ALIGN_SMALL_MAX_EXPERTS ? (small_ids + 31) / 32 * 32 : 0;
    g->onepass_tile = tile < ALIGN_ONEPASS_TILE ? tile : ALIGN_ONEPASS_TILE;
}

void mj_align_geom_for(const mj_align_shape *s, mj_align_geom *g)
{
    mj_align_geom_make(s->experts, s->block_size, ALIGN_THREADS, ALIGN_HIST_BUDGET, ALIGN_TILE, ALIGN_SMALL_IDS, g);
    g->id_dtype = s->id_dtype;
    g->global_experts = s->global_experts;
}

/* align.cuh's kSmallSmemInts: counts and offsets at padded indices, each block's expert. */
int mj_align_small_smem_ints(const mj_align_geom *g)
{
    const int run = (g->experts + 31) / 32;
    /* Blocks holding rows, for n ids over k experts that have some: at most k + (n - k) / B, the
     * most when k = min(n, E), so at most n (B = 1: a block a row) (align.cuh's kSmallBlocks). */
    const int used = g->small_ids < g->experts ? g->small_ids : g->experts;
    const int blocks = used + (g->small_ids - used) / g->block_size;
    return g->small_ids ? 2 * (32 * run + run + 1) + blocks : 0;
}

/* align.cuh's kBlockSmemInts: the Smem views. */
static int block_smem_ints(const mj_align_geom *g)
{
    return g->count_warps * g->experts + (g->experts + 1) + g->experts + g->tile + g->threads / 32;
}

int mj_align_smem_ints(const mj_align_geom *g)
{
    const int block = block_smem_ints(g), small = mj_align_small_smem_ints(g);
    return block > small ? block : small;
}

int mj_align_onepass_smem_ints(const mj_align_geom *g)
{
    return block_smem_ints(g) + g->experts;
}

/* Set l->path to `path` and what follows from it (tiles, workspace, grid) for l->n ids. */
static void layout_path(mj_align_layout *l, const mj_align_geom *g, int path)
{
    const int warps = g->threads / 32;
    l->path = path;
    l->tiles = 0;
    l->ws_bytes = 0;
    l->blocks = 1;
    if (path == MJ_ALIGN_PATH_ONEPASS) {
        /* A tile of at most onepass_tile ids a block, and a warp an expert for the fill (up to
         * ALIGN_ONEPASS_FILL_BLOCKS blocks): ceil(n / blocks) <= onepass_tile <= the Smem tile. */
        const int64_t tiles = (l->n + g->onepass_tile - 1) / g->onepass_tile;
        int fill = (g->experts + warps - 1) / warps;
        if (fill > ALIGN_ONEPASS_FILL_BLOCKS) fill = ALIGN_ONEPASS_FILL_BLOCKS;
        l->blocks = tiles > fill ? (int)tiles : fill;
    } else if (path == MJ_ALIGN_PATH_TILED) {
        l->tiles = (int)((l->n + g->tile - 1) / g->tile);
        /* tile prefixes [P][E], counts [E], offsets [E+1], padding starts [E] (align.cuh) */
        l->ws_bytes = 4 * ((size_t)l->tiles * (size_t)g->experts + 3 * (size_t)g->experts + 1);
        /* Every warp of the scatter grid fills (padding, block_expert) at most one window of 32
         * experts, so the grid has at least that many warps, whatever the number of tiles. */
        const int fill = ((g->experts + 31) / 32 + warps - 1) / warps;
        l->blocks = l->tiles > fill ? l->tiles : fill;
    }
}

moejit_status mj_align_layout_for(const char *op, int experts, int block_size, int64_t num_tokens, int64_t topk,
                                  int32_t expert_capacity, int path, mj_align_layout *out)
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
    if (expert_capacity > 0) { /* static: every expert's range round_up(C, B) rows */
        const int64_t rows = ((int64_t)expert_capacity + block_size - 1) / block_size * block_size;
        out->capacity = rows * experts;
        if (out->capacity > INT32_MAX)
            return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                           "%s spec: expert_capacity = %d pads %d experts to %lld rows, more than %d (positions are int32)",
                           op, expert_capacity, experts, (long long)out->capacity, INT32_MAX);
    }
    if (out->capacity > INT32_MAX)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                       "%s args: %lld ids over %d experts can need %lld padded rows, more than %d (positions are "
                       "int32)", op, (long long)n, experts, (long long)out->capacity, INT32_MAX);
    mj_align_geom g; /* the sizes do not depend on the ids' type or their map */
    mj_align_geom_for(&(mj_align_shape){.experts = experts, .block_size = block_size}, &g);
    /* The small entry's block table holds the blocks of n ids, not of a capacity's padded ranges. */
    const int small_fits = g.small_ids > 0 && n <= g.small_ids && expert_capacity <= 0;
    if (path == MJ_ALIGN_PATH_AUTO)
        path = small_fits ? MJ_ALIGN_PATH_SMALL
               : n <= MJ_ALIGN_ONEPASS_MAX_IDS ? MJ_ALIGN_PATH_ONEPASS
                                               : MJ_ALIGN_PATH_TILED;
    else if (path == MJ_ALIGN_PATH_SMALL && !small_fits)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "%s: the small path takes up to %d ids over up to %d experts, without a capacity (%lld ids, "
                       "E = %d, expert_capacity = %d)",
                       op, ALIGN_SMALL_IDS, ALIGN_SMALL_MAX_EXPERTS, (long long)n, experts, expert_capacity);
    layout_path(out, &g, path);
    return MOEJIT_OK;
}

/* An optional int32 output: NULL is fine, a misaligned pointer is not. */
static moejit_status check_optional(const char *op, const char *name, const void *p)
{
    return p ? mj_check_pointer(op, name, p, 4) : MOEJIT_OK;
}

moejit_status mj_align_check_outputs(const char *op, const mj_align_layout *l, const void *ids, int id_dtype,
                                     const moejit_align_outputs *o, int check_workspace, mj_align_params *p)
{
    memset(p, 0, sizeof *p);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("align outputs", o)) != MOEJIT_OK) return st;
    if (l->n > 0 && (st = mj_check_pointer(op, "ids", ids, (size_t)mj_index_dtype_bytes(id_dtype))) != MOEJIT_OK)
        return st;
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
    if (check_workspace && l->ws_bytes && wanted) {
        if (o->workspace_bytes < l->ws_bytes)
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                           "%s args: workspace_bytes = %zu is smaller than the %zu bytes a batch of %lld ids needs "
                           "(moejit_align_workspace_bytes)", op, o->workspace_bytes, l->ws_bytes, (long long)l->n);
        if ((st = mj_check_pointer(op, "workspace", o->workspace, 4)) != MOEJIT_OK) return st;
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
    p->ws = l->ws_bytes ? o->workspace : NULL;
    p->num_tiles = l->tiles;
    return MOEJIT_OK;
}

/* How ids become local experts: expert_map with spec.global_experts, else first_expert, never
 * both (a map already gives local ids), and never a map the spec does not announce (its ids would
 * be read as local ones). */
static moejit_status check_mapping(const mj_align_shape *s, const moejit_align_args *a, const mj_align_layout *l,
                                   mj_align_params *p)
{
    if (!s->global_experts) {
        if (a->expert_map)
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                           "align args: expert_map = %p is given but spec.global_experts = 0 (set it to the map's "
                           "length, the number of global experts)", (const void *)a->expert_map);
        p->first_expert = a->first_expert;
        return MOEJIT_OK;
    }
    if (a->first_expert)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "align args: first_expert = %d with expert_map (spec.global_experts = %d): the map gives "
                       "local ids already; first_expert must be 0", a->first_expert, s->global_experts);
    if (l->n > 0 && !a->expert_map)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "align args: expert_map is NULL, but spec.global_experts = %d needs a map of that many entries",
                       s->global_experts);
    if (a->expert_map) {
        moejit_status st = mj_check_pointer("align", "expert_map", a->expert_map, 4);
        if (st != MOEJIT_OK) return st;
    }
    p->expert_map = a->expert_map;
    return MOEJIT_OK;
}

moejit_status mj_align_check_call(const moejit_align_spec *spec, const moejit_align_args *args, int check_workspace,
                                  int path, mj_align_shape *shape, mj_align_layout *l, mj_align_params *p)
{
    moejit_status st = mj_align_normalize(spec, shape);
    if (st != MOEJIT_OK) return st;
    if (!args) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "align args: args is NULL");
    if ((st = mj_align_check_args_reserved(args)) != MOEJIT_OK) return st;
    if ((st = mj_align_layout_for("align", shape->experts, shape->block_size, args->num_tokens, args->topk,
                                  spec->expert_capacity, path, l)) != MOEJIT_OK)
        return st;
    st = mj_align_check_outputs("align", l, args->ids, shape->id_dtype, &args->out, check_workspace, p);
    p->expert_capacity = spec->expert_capacity;
    return st == MOEJIT_OK ? check_mapping(shape, args, l, p) : st;
}

moejit_status mj_align_check_args_reserved(const moejit_align_args *a)
{
    return MJ_CHECK_RESERVED("align args", a);
}

int mj_align_wants_output(const mj_align_params *p)
{
    return p->counts || p->offsets || p->sorted_ids || p->block_expert || p->total_padded || p->slot_of;
}
