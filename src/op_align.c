/* align as a kernel family: spec validation and normalisation, names, plan and codegen. */
#include "op_align.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "op.h"
#include "templates.h"

enum {
    ALIGN_THREADS = 512,
    ALIGN_TILE = 4096, /* ids a block ranks at once; also the largest one-launch batch */
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
    out->experts = e;
    out->block_size = b;
    return MOEJIT_OK;
}

void mj_align_geom_make(int experts, int block_size, int threads, int hist_budget, int tile, int small_ids,
                        mj_align_geom *g)
{
    g->experts = experts;
    g->block_size = block_size;
    g->threads = threads;
    g->count_warps = threads / 32;
    while (g->count_warps > 1 && (long)g->count_warps * experts * 4 > hist_budget) g->count_warps /= 2;
    g->tile = tile;
    g->expert_bits = 1;
    while ((1 << g->expert_bits) < experts) g->expert_bits++;
    g->small_ids = experts <= ALIGN_SMALL_MAX_EXPERTS ? (small_ids + 31) / 32 * 32 : 0;
}

void mj_align_geom_default(int experts, int block_size, mj_align_geom *g)
{
    mj_align_geom_make(experts, block_size, ALIGN_THREADS, ALIGN_HIST_BUDGET, ALIGN_TILE, ALIGN_SMALL_IDS, g);
}

/* align.cuh's kSmallSmemInts: counts and offsets at padded indices, each block's expert. */
static int small_smem_ints(const mj_align_geom *g)
{
    const int run = (g->experts + 31) / 32;
    /* Blocks holding rows, for n ids over k experts that have some: at most k + (n - k) / B, the
     * most when k = min(n, E), so at most n (B = 1: a block a row) (align.cuh's kSmallBlocks). */
    const int used = g->small_ids < g->experts ? g->small_ids : g->experts;
    const int blocks = used + (g->small_ids - used) / g->block_size;
    return g->small_ids ? 2 * (32 * run + run + 1) + blocks : 0;
}

int mj_align_smem_ints(const mj_align_geom *g)
{
    const int block = g->count_warps * g->experts + (g->experts + 1) + g->experts + g->tile + g->threads / 32;
    const int small = small_smem_ints(g);
    return block > small ? block : small;
}

void mj_align_plan_entries(mj_kernel_plan *plan, int first, const mj_align_geom *g)
{
    const int smem = 4 * mj_align_smem_ints(g);
    mj_plan_entry(plan, first + MJ_ALIGN_SINGLE, "_single", g->threads, g->tile, smem);
    mj_plan_entry(plan, first + MJ_ALIGN_COUNT, "_count", g->threads, g->tile, 4 * g->experts);
    mj_plan_entry(plan, first + MJ_ALIGN_SCAN, "_scan", g->threads, 0, smem);
    mj_plan_entry(plan, first + MJ_ALIGN_SCATTER, "_scatter", g->threads, g->tile, smem);
    mj_plan_entry(plan, first + MJ_ALIGN_SMALL, "_small", g->threads, g->small_ids, 4 * small_smem_ints(g));
}

void mj_align_emit_cfg(mj_strbuf *sb, const char *cfg, const mj_align_geom *g)
{
    mj_sb_printf(sb,
                 "struct %s {\n"
                 "    static constexpr int kExperts = %d;\n"
                 "    static constexpr int kBlockSize = %d;\n"
                 "    static constexpr int kThreads = %d;\n"
                 "    static constexpr int kCountWarps = %d;\n"
                 "    static constexpr int kTile = %d;\n"
                 "    static constexpr int kExpertBits = %d;\n"
                 "    static constexpr int kSmallIds = %d;\n"
                 "};\n\n",
                 cfg, g->experts, g->block_size, g->threads, g->count_warps, g->tile, g->expert_bits, g->small_ids);
}

void mj_align_emit_entries(mj_strbuf *sb, const mj_kernel_plan *plan, int first, const char *cfg)
{
    static const char *const calls[MJ_ALIGN_ENTRIES] = {"single_launch", "count", "scan", "scatter_tiles",
                                                             "small_launch"};
    for (int i = 0; i < MJ_ALIGN_ENTRIES; i++) {
        const mj_entry_plan *e = &plan->entry[first + i];
        mj_sb_printf(sb,
                     "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::AlignParams p)\n"
                     "{\n"
                     "    mj::Align<%s>::%s(p);\n"
                     "}\n\n",
                     e->threads, e->name, cfg, calls[i]);
    }
}

static moejit_status align_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    return mj_align_normalize(&desc->align, &id->u.align);
}

static int align_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    return snprintf(buf, cap, "moejit_align_e%d_b%d", id->u.align.experts, id->u.align.block_size);
}

static int align_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    return snprintf(buf, cap, "E=%d B=%d", id->u.align.experts, id->u.align.block_size);
}

static void align_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    mj_align_geom g;
    mj_align_geom_default(id->u.align.experts, id->u.align.block_size, &g);
    mj_align_plan_entries(plan, 0, &g);
}

static void align_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    mj_align_geom g;
    mj_align_geom_default(id->u.align.experts, id->u.align.block_size, &g);
    mj_sb_puts(sb, mj_template_align_cuh);
    mj_sb_puts(sb, "\n// ---- this kernel's shape -------------------------------------------------\n");
    mj_align_emit_cfg(sb, "MoejitAlignCfg", &g);
    mj_align_emit_entries(sb, plan, 0, "MoejitAlignCfg");
}

const mj_op mj_op_align = {
    .op = MOEJIT_OP_ALIGN,
    .name = "align",
    .normalize = align_normalize_desc,
    .module_name = align_module_name,
    .describe = align_describe,
    .plan = align_plan,
    .emit = align_emit,
};
