/* mx_scales' codegen: the launch plan, the parameter struct, the Cfg and the six entry points —
 * where an mx_scales shape becomes CUDA source (kernel_templates/mx_scales.cuh). */
#include "ops/mx_scales/mx_scales.h"

#include <stddef.h>
#include <stdio.h>

#include "jit/codegen.h"

extern const char mj_template_mx_scales_cuh[];

static const mj_param_layout k_params = MJ_PARAM_LAYOUT(mj_mx_params, "MxParams", MJ_MX_PARAMS);

MJ_DEFINE_SHAPE_OF(shape_of, mj_mx_scales_shape)

static moejit_status mx_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_mx_scales_shape s;
    return mj_kernel_id_result(mj_mx_scales_normalize(&desc->mx_scales, &s), id, &mj_op_mx_scales, &s, sizeof s);
}

static int mx_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    return snprintf(buf, cap, "moejit_mx_scales_c%d", shape_of(id).cols);
}

static int mx_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    return snprintf(buf, cap, "C=%d", shape_of(id).cols);
}

/* Indexed by MJ_MX_TO_BLOCKED_3D ..: the entry's name suffix and the call it makes. */
static const char *const k_entry_suffix[MJ_MX_ENTRIES] = {"_to_blocked_3d",   "_to_blocked_2d",    "_from_blocked_3d",
                                                          "_from_blocked_2d", "_to_blocked_2d_k", "_from_blocked_2d_k"};
static const char *const k_entry_call[MJ_MX_ENTRIES] = {"run<true, false>",  "run<true, true>", "run<false, false>",
                                                        "run<false, true>",  "run_k<true>",     "run_k<false>"};

static void mx_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    mj_mx_geom g;
    mj_mx_geom_for(shape_of(id).cols, &g);
    for (int i = 0; i < MJ_MX_ENTRIES; i++) mj_plan_entry(plan, i, k_entry_suffix[i], 32 * g.segs, 1 /* unit */, 0);
}

static void mx_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const int cols = shape_of(id).cols;
    mj_mx_geom g;
    mj_mx_geom_for(cols, &g);
    mj_emit_params(sb, &k_params);
    mj_sb_puts(sb, mj_template_mx_scales_cuh);
    mj_sb_printf(sb,
                 "\n// ---- this kernel's shape -------------------------------------------------\n"
                 "struct MoejitMxCfg {\n"
                 "    static constexpr int kCols = %d;\n"
                 "    static constexpr int kSegs = %d;\n"
                 "    static constexpr int kChunks = %d;\n"
                 "};\n\n",
                 cols, g.segs, g.chunks);
    for (int i = 0; i < MJ_MX_ENTRIES; i++)
        mj_sb_printf(sb,
                     "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::MxParams p)\n"
                     "{\n" MJ_ENTRY_PROLOGUE
                     "    mj::MxScales<MoejitMxCfg>::%s(p);\n"
                     "}\n\n",
                     plan->entry[i].threads, plan->entry[i].name, k_entry_call[i]);
}

const mj_op mj_op_mx_scales = {
    .op = MOEJIT_OP_MX_SCALES,
    .name = "mx_scales",
    .normalize = mx_normalize_desc,
    .module_name = mx_module_name,
    .describe = mx_describe,
    .plan = mx_plan,
    .emit = mx_emit,
};
