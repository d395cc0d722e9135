/* route_align as a kernel family: spec validation and normalisation, names, plan and codegen. */
#include "op_route_align.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "op.h"
#include "templates.h"

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
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = spec->route};
    mj_kernel_id rid;
    memset(&rid, 0, sizeof rid);
    rid.op = MOEJIT_OP_ROUTE;
    moejit_status st = mj_op_route.normalize(&d, &rid);
    if (st == MOEJIT_OK) st = mj_align_check_block("route_align spec", spec->block_size);
    if (st != MOEJIT_OK) return st;
    out->route = rid.u.route;
    out->block_size = spec->block_size;
    return MOEJIT_OK;
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
    mj_align_geom_make(r->experts + r->shared_slots, s->block_size, threads, FUSED_HIST_BUDGET, 0,
                       FUSED_MAX_TOKENS * slots, &f->align);
    int tokens = FUSED_MAX_TOKENS;
    while (tokens > 1 && fit_fused_batch(&f->align, tokens, slots) > FUSED_SMEM_BUDGET) tokens--;
    if (r->experts > 1024) tokens = 0; /* a warp routes up to 1024 experts: beyond, always two launches */
    f->max_tokens = tokens;
    f->smem_bytes = fit_fused_batch(&f->align, tokens, slots);
}

static moejit_status route_align_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    return mj_route_align_normalize(&desc->route_align, &id->u.route_align);
}

/* route's id for the route part of a route_align id. */
static void route_id(const mj_kernel_id *id, mj_kernel_id *rid)
{
    memset(rid, 0, sizeof *rid);
    rid->op = MOEJIT_OP_ROUTE;
    rid->u.route = id->u.route_align.route;
}

static int route_align_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    mj_kernel_id rid;
    route_id(id, &rid);
    char route[MJ_NAME_MAX * 2];
    mj_op_route.module_name(&rid, route, sizeof route);
    static const char prefix[] = "moejit_route_";
    return snprintf(buf, cap, "moejit_route_align_%s_b%d", route + strlen(prefix), id->u.route_align.block_size);
}

static int route_align_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    mj_kernel_id rid;
    route_id(id, &rid);
    int n = mj_op_route.describe(&rid, buf, cap);
    mj_appendf(buf, cap, &n, " B=%d", id->u.route_align.block_size);
    return n;
}

static void route_align_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_route_align_shape *s = &id->u.route_align;
    mj_route_align_fused f;
    mj_route_align_fused_for(s, &f);
    mj_plan_entry(plan, MJ_RA_FUSED, "_fused", f.align.threads, f.max_tokens, f.smem_bytes);
    mj_plan_entry(plan, MJ_RA_ROUTE, "_route", 32 * MJ_ROUTE_WARPS_PER_BLOCK, MJ_ROUTE_WARPS_PER_BLOCK, 0);
    mj_align_geom g;
    mj_align_geom_default(s->route.experts + s->route.shared_slots, s->block_size, &g);
    mj_align_plan_entries(plan, MJ_RA_ALIGN, &g);
}

static void route_align_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_route_align_shape *s = &id->u.route_align;
    mj_route_align_fused f;
    mj_route_align_fused_for(s, &f);
    mj_align_geom g;
    mj_align_geom_default(s->route.experts + s->route.shared_slots, s->block_size, &g);
    mj_sb_puts(sb, mj_template_route_cuh);
    mj_sb_puts(sb, mj_template_align_cuh);
    mj_sb_puts(sb, mj_template_route_align_cuh);
    mj_sb_printf(sb, "\n// ---- this kernel's shape: fused up to %d tokens -----------------------------\n",
                 f.max_tokens);
    mj_route_emit_cfg(sb, &s->route);
    mj_align_emit_cfg(sb, "MoejitAlignCfg", &g);
    mj_align_emit_cfg(sb, "MoejitFusedAlignCfg", &f.align);
    const mj_entry_plan *e = &plan->entry[MJ_RA_FUSED];
    mj_sb_printf(sb,
                 "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::RouteAlignParams p)\n"
                 "{\n"
                 "    mj::route_align_fused<MoejitRouteCfg, MoejitFusedAlignCfg>(p);\n"
                 "}\n\n",
                 e->threads, e->name);
    mj_route_emit_entry(sb, plan->entry[MJ_RA_ROUTE].name);
    mj_sb_puts(sb, "\n");
    mj_align_emit_entries(sb, plan, MJ_RA_ALIGN, "MoejitAlignCfg");
}

const mj_op mj_op_route_align = {
    .op = MOEJIT_OP_ROUTE_ALIGN,
    .name = "route_align",
    .normalize = route_align_normalize_desc,
    .module_name = route_align_module_name,
    .describe = route_align_describe,
    .plan = route_align_plan,
    .emit = route_align_emit,
};
