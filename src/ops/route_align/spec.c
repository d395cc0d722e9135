/* route_align's spec: validation and normalisation (route's, then the block size), the fused
 * kernel's geometry, and the names of shapes. */
#include "ops/route_align/route_align.h"

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
    /* One block, on one SM, routes every token (a warp each): routing is bound by instruction
     * issue, so past a few tokens the route kernel's full grid and a second launch are faster
     * (bench_ops on the H100: 4% ahead at T = 4, 5% behind at T = 8). */
    FUSED_MAX_TOKENS = 4,
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

/* Fit align's geometry inside the fused kernel to a batch of `tokens` (its tile and, where E+S
 * allows the small path, the small batch) and return the kernel's shared memory: align's, then
 * an id per slot. */
static int fit_fused_batch(mj_align_geom *g, int tokens, int slots)
{
    g->tile = tokens * slots;
    if (g->small_ids) g->small_ids = (g->tile + 31) / 32 * 32; /* align's small path takes the whole batch */
    return 4 * (mj_align_smem_ints(g) + g->tile);
}

void mj_route_align_fused_for(const mj_route_align_shape *s, mj_route_align_fused *f)
{
    const mj_route_shape *r = &s->route;
    const int slots = r->topk + r->shared_slots;
    /* a warp a token; the block's other threads join in align's small path */
    const int threads = 32 * FUSED_MAX_TOKENS;
    mj_align_geom_make(mj_route_id_space(r), s->block_size, threads, FUSED_HIST_BUDGET, 0,
                       FUSED_MAX_TOKENS * slots, &f->align);
    int tokens = FUSED_MAX_TOKENS;
    while (tokens > 1 && fit_fused_batch(&f->align, tokens, slots) > FUSED_SMEM_BUDGET) tokens--;
    if (r->experts > 1024) tokens = 0; /* a warp routes up to 1024 experts: beyond, always two launches */
    f->max_tokens = tokens;
    f->smem_bytes = fit_fused_batch(&f->align, tokens, slots);
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
