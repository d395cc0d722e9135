/* route_align's spec: validation and normalisation (route's, then the block size), the fused
 * kernel's geometry, and the names of shapes. */
#include "ops/route_align/route_align.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/strbuf.h"

enum {
    /* Shared memory of the fused kernel: what sm_80 and newer allow one block (opted in). */
    FUSED_SMEM_BUDGET = 96 * 1024,
    /* Its counting warps' histograms get at most this; the rest goes to the tokens. */
    FUSED_HIST_BUDGET = 32 * 1024,
    /* A block of 8 warps: a token a warp, and 256 threads for align's passes over E+S experts
     * (one expert a thread at E+S = 257). */
    FUSED_WARPS = 8,
    /* The most blocks of a cluster that every sm_90 GPU schedules (the portable size). */
    FUSED_CLUSTER = 8,
    /* Tokens of one block while the cluster can grow: few, so that a block's routing stays one
     * round of warps that barely compete for issue slots, and G blocks share the stores. */
    FUSED_BLOCK_TOKENS = 4,
    /* Issue 17's decode range; a cluster of 8 blocks routes it at 8 tokens a block, one round. */
    FUSED_MAX_TOKENS = FUSED_CLUSTER * FUSED_WARPS,
    /* One block aligns up to this many ids with align's small path (a warp ranks 32 ids a step,
     * in series: cheap for a decode batch, not for many steps). */
    FUSED_SMALL_MAX_IDS = 128,
};

moejit_status mj_route_align_normalize(const moejit_route_align_spec *spec, mj_route_align_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route_align spec: spec is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st_r = MJ_CHECK_RESERVED("route_align spec", spec);
    if (st_r != MOEJIT_OK) return st_r;
    /* route's own checks, including what its kernel does not implement yet */
    moejit_status st = mj_route_normalize(&spec->route, &out->route);
    if (st == MOEJIT_OK && out->route.aux_stats)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                       "route_align spec: route.aux_stats = 0x%x: the auxiliary-loss statistics need moejit_route "
                       "then moejit_align", (unsigned)out->route.aux_stats);
    if (st == MOEJIT_OK) st = mj_align_check_block("route_align spec", spec->block_size);
    if (st != MOEJIT_OK) return st;
    out->block_size = spec->block_size;
    return MOEJIT_OK;
}

mj_align_shape mj_route_align_fallback_shape(const mj_route_align_shape *s)
{
    const mj_route_shape *r = &s->route;
    /* align reads route's ids as route wrote them: physical ids (P + S experts), route's type */
    return (mj_align_shape){.experts = mj_route_id_space(r), .block_size = s->block_size, .id_dtype = r->id_dtype};
}

/* Fit align's geometry inside the fused kernel to a batch of `tokens` (its tile) and return the
 * kernel's shared memory: align's block views, then a block → expert label per id (or the small
 * path's scratch, one block's decode batch); INT_MAX where the rank codes (rank << expert bits)
 * would not fit 32 bits. */
static int fit_fused_batch(mj_align_geom *g, int tokens, int slots)
{
    g->tile = tokens * slots;
    if (((int64_t)g->tile << g->expert_bits) >= 0xffffffffLL) return INT_MAX;
    const int small = mj_align_small_smem_ints(g);
    return 4 * (mj_align_smem_ints(g) + (g->tile > small ? g->tile : small));
}

void mj_route_align_fused_for(const mj_route_align_shape *s, mj_route_align_fused *f)
{
    const mj_route_shape *r = &s->route;
    const int slots = r->topk + r->shared_slots;
    /* the ids one block routes (its whole batch below sm_90), for align's small path */
    const int small_ids = FUSED_WARPS * slots < FUSED_SMALL_MAX_IDS ? FUSED_WARPS * slots : FUSED_SMALL_MAX_IDS;
    mj_align_geom_make(mj_route_id_space(r), s->block_size, 32 * FUSED_WARPS, FUSED_HIST_BUDGET, 0, small_ids,
                       &f->align);
    int tokens = r->experts > 1024 ? 0 : FUSED_MAX_TOKENS; /* a warp routes up to 1024 experts */
    while (tokens > 0 && fit_fused_batch(&f->align, tokens, slots) > FUSED_SMEM_BUDGET) tokens--;
    f->max_tokens = tokens;
    f->block_tokens = tokens < FUSED_WARPS ? tokens : FUSED_WARPS;
    f->smem_bytes = tokens ? fit_fused_batch(&f->align, tokens, slots) : 0; /* 0: never launched */
}

int mj_route_align_fused_blocks(int64_t tokens, int clusters)
{
    if (!clusters || tokens <= FUSED_BLOCK_TOKENS) return 1;
    const int64_t blocks = (tokens + FUSED_BLOCK_TOKENS - 1) / FUSED_BLOCK_TOKENS;
    return blocks < FUSED_CLUSTER ? (int)blocks : FUSED_CLUSTER;
}

int mj_route_align_module_name(const mj_route_align_shape *s, char *buf, size_t cap)
{
    char route[MJ_ROUTE_NAME_CAP];
    mj_route_module_name(&s->route, route, sizeof route);
    static const char prefix[] = "moejit_route_";
    return snprintf(buf, cap, "moejit_route_align_%s_b%d", route + strlen(prefix), s->block_size);
}

int mj_route_align_describe(const mj_route_align_shape *s, char *buf, size_t cap)
{
    int n = mj_route_describe(&s->route, buf, cap);
    mj_appendf(buf, cap, &n, " B=%d", s->block_size);
    return n;
}
