/* mx_scales as a kernel family: spec validation and normalisation, names, plan and codegen. One
 * module per C holds both layouts in both directions. */
#include "op_mx_scales.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "op.h"
#include "templates.h"

moejit_status mj_mx_scales_normalize(const moejit_mx_scales_spec *spec, mj_mx_scales_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "mx_scales spec: spec is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("mx_scales spec", spec);
    if (st != MOEJIT_OK) return st;
    const int c = spec->cols;
    if (c < 1) return mj_fail(MOEJIT_ERR_INVALID_SPEC, "mx_scales spec: cols = %d must be >= 1", c);
    if (c > MOEJIT_MAX_MX_COLS)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED, "mx_scales spec: cols = %d exceeds the maximum %d", c, MOEJIT_MAX_MX_COLS);
    out->cols = c;
    return MOEJIT_OK;
}

void mj_mx_geom_for(int cols, mj_mx_geom *g)
{
    g->tiles = (cols + 3) / 4;
    const int segs = (g->tiles + 3) / 4;
    /* At most 8 warps a block; the segments are shared out evenly between the chunks so that no
     * chunk is left mostly idle (C = 160: 2 chunks of 5 segments, not 8 + 2). */
    g->chunks = (segs + 7) / 8;
    g->segs = (segs + g->chunks - 1) / g->chunks;
}

static moejit_status mx_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    return mj_mx_scales_normalize(&desc->mx_scales, &id->u.mx_scales);
}

static int mx_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    return snprintf(buf, cap, "moejit_mx_scales_c%d", id->u.mx_scales.cols);
}

static int mx_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    return snprintf(buf, cap, "C=%d", id->u.mx_scales.cols);
}

static const char *const k_entry_suffix[] = {"_to_blocked_3d", "_to_blocked_2d", "_from_blocked_3d", "_from_blocked_2d"};

static void mx_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    mj_mx_geom g;
    mj_mx_geom_for(id->u.mx_scales.cols, &g);
    for (int i = 0; i < 4; i++) mj_plan_entry(plan, i, k_entry_suffix[i], 32 * g.segs, 1 /* unit */, 0);
}

static void mx_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    mj_mx_geom g;
    mj_mx_geom_for(id->u.mx_scales.cols, &g);
    mj_sb_puts(sb, mj_template_mx_scales_cuh);
    mj_sb_printf(sb,
                 "\n// ---- this kernel's shape -------------------------------------------------\n"
                 "struct MoejitMxCfg {\n"
                 "    static constexpr int kCols = %d;\n"
                 "    static constexpr int kSegs = %d;\n"
                 "    static constexpr int kChunks = %d;\n"
                 "};\n\n",
                 id->u.mx_scales.cols, g.segs, g.chunks);
    static const char *const modes[] = {"true, false", "true, true", "false, false", "false, true"};
    for (int i = 0; i < 4; i++)
        mj_sb_printf(sb,
                     "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::MxParams p)\n"
                     "{\n"
                     "    mj::MxScales<MoejitMxCfg>::run<%s>(p);\n"
                     "}\n\n",
                     plan->entry[i].threads, plan->entry[i].name, modes[i]);
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
