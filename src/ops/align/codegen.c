/* align's codegen: the launch plan, the parameter struct, the Cfg and the entry points — where an
 * align shape becomes CUDA source (kernel_templates/align.cuh is the code it configures). */
#include "ops/align/align.h"

#include <stddef.h>
#include <stdio.h>

#include "common/dtype.h"
#include "jit/codegen.h"

extern const char mj_template_align_cuh[];

static const mj_param_layout k_params = MJ_PARAM_LAYOUT(mj_align_params, "AlignParams", MJ_ALIGN_PARAMS);

MJ_DEFINE_SHAPE_OF(shape_of, mj_align_shape)

void mj_align_plan_entries(mj_kernel_plan *plan, int first, const mj_align_geom *g)
{
    const int smem = 4 * mj_align_smem_ints(g);
    mj_plan_entry(plan, first + MJ_ALIGN_ONEPASS, "_onepass", g->threads, g->onepass_tile,
                  4 * mj_align_onepass_smem_ints(g));
    mj_plan_entry(plan, first + MJ_ALIGN_COUNT, "_count", g->threads, g->tile, 4 * g->experts);
    mj_plan_entry(plan, first + MJ_ALIGN_SCAN, "_scan", g->threads, 0, smem);
    mj_plan_entry(plan, first + MJ_ALIGN_SCATTER, "_scatter", g->threads, g->tile, smem);
    mj_plan_entry(plan, first + MJ_ALIGN_SMALL, "_small", g->threads, g->small_ids, 4 * mj_align_small_smem_ints(g));
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
                 "    typedef %s Id;\n"
                 "    static constexpr int kGlobalExperts = %d;\n"
                 "};\n\n",
                 cfg, g->experts, g->block_size, g->threads, g->count_warps, g->tile, g->expert_bits, g->small_ids,
                 mj_index_dtype_ctype(g->id_dtype), g->global_experts);
}

void mj_align_emit_entries(mj_strbuf *sb, const mj_kernel_plan *plan, int first, const char *cfg)
{
    static const char *const calls[MJ_ALIGN_ENTRIES] = {"onepass", "count", "scan", "scatter_tiles", "small_launch"};
    for (int i = 0; i < MJ_ALIGN_ENTRIES; i++) {
        const mj_entry_plan *e = &plan->entry[first + i];
        mj_sb_printf(sb,
                     "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::AlignParams p)\n"
                     "{\n" MJ_ENTRY_PROLOGUE
                     "    mj::Align<%s>::%s(p);\n"
                     "}\n\n",
                     e->threads, e->name, cfg, calls[i]);
    }
}

void mj_align_emit_template(mj_strbuf *sb)
{
    mj_emit_params(sb, &k_params);
    mj_sb_puts(sb, mj_template_align_cuh);
}

static moejit_status align_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_align_shape a;
    return mj_kernel_id_result(mj_align_normalize(&desc->align, &a), id, &mj_op_align, &a, sizeof a);
}

/* Names gain a part only away from the defaults (int32 ids, no map), so the names of the
 * shapes that existed before id dtypes and maps stay what they were. */
static int align_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_align_shape a = shape_of(id);
    static const char *const suffix[] = {"", "_i64", "_i16"};
    int n = snprintf(buf, cap, "moejit_align_e%d_b%d%s", a.experts, a.block_size, suffix[a.id_dtype]);
    if (a.global_experts) mj_appendf(buf, cap, &n, "_g%d", a.global_experts);
    return n;
}

static int align_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_align_shape a = shape_of(id);
    int n = snprintf(buf, cap, "E=%d B=%d", a.experts, a.block_size);
    if (a.id_dtype != MOEJIT_INDEX_INT32) mj_appendf(buf, cap, &n, " ids=%s", mj_index_dtype_name(a.id_dtype));
    if (a.global_experts) mj_appendf(buf, cap, &n, " Eg=%d", a.global_experts);
    return n;
}

static void align_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_align_shape a = shape_of(id);
    mj_align_geom g;
    mj_align_geom_for(&a, &g);
    mj_align_plan_entries(plan, 0, &g);
}

static void align_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_align_shape a = shape_of(id);
    mj_align_geom g;
    mj_align_geom_for(&a, &g);
    mj_align_emit_template(sb);
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
