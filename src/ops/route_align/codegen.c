/* route_align's codegen: the launch plan, the parameter structs, the Cfgs and the entry points
 * (the fused kernel's, route's and align's) — where a route_align shape becomes CUDA source
 * (kernel_templates/route_align.cuh, on route.cuh and align.cuh). */
#include "ops/route_align/route_align.h"

#include <stddef.h>
#include <stdio.h>

#include "jit/codegen.h"

extern const char mj_template_route_align_cuh[];

static const mj_param_layout k_params =
    MJ_PARAM_LAYOUT(mj_route_align_params, "RouteAlignParams", MJ_ROUTE_ALIGN_PARAMS);

MJ_DEFINE_SHAPE_OF(shape_of, mj_route_align_shape)

static moejit_status route_align_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_route_align_shape s;
    return mj_kernel_id_result(mj_route_align_normalize(&desc->route_align, &s), id, &mj_op_route_align, &s, sizeof s);
}

static int route_align_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_align_shape s = shape_of(id);
    return mj_route_align_module_name(&s, buf, cap);
}

static int route_align_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_align_shape s = shape_of(id);
    return mj_route_align_describe(&s, buf, cap);
}

static void route_align_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_route_align_shape s = shape_of(id);
    mj_route_align_fused f;
    mj_route_align_fused_for(&s, &f);
    mj_plan_entry(plan, MJ_RA_FUSED, "_fused", f.align.threads, f.block_tokens, f.smem_bytes);
    const int warps = mj_route_warps_per_block(&s.route);
    mj_plan_entry(plan, MJ_RA_ROUTE, "_route", 32 * warps, mj_route_tokens_per_block(s.route.experts, warps), 0);
    const mj_align_shape fallback = mj_route_align_fallback_shape(&s);
    mj_align_geom g;
    mj_align_geom_for(&fallback, &g);
    mj_align_plan_entries(plan, MJ_RA_ALIGN, &g);
}

static void route_align_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_route_align_shape s = shape_of(id);
    mj_route_align_fused f;
    mj_route_align_fused_for(&s, &f);
    const mj_align_shape fallback = mj_route_align_fallback_shape(&s);
    mj_align_geom g;
    mj_align_geom_for(&fallback, &g);
    mj_route_emit_module(sb, &s.route); /* route's template and MoejitRouteCfg */
    mj_align_emit_template(sb);
    mj_emit_params(sb, &k_params);
    mj_sb_puts(sb, mj_template_route_align_cuh);
    mj_sb_printf(sb, "\n// ---- align in this module: fused up to %d tokens (%d a block) ----------------------\n",
                 f.max_tokens, f.block_tokens);
    mj_align_emit_cfg(sb, "MoejitAlignCfg", &g);
    mj_align_emit_cfg(sb, "MoejitFusedAlignCfg", &f.align);
    const mj_entry_plan *e = &plan->entry[MJ_RA_FUSED];
    mj_sb_printf(sb,
                 "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::RouteAlignParams p)\n"
                 "{\n" MJ_ENTRY_PROLOGUE
                 "    mj::route_align_fused<MoejitRouteCfg, MoejitFusedAlignCfg>(p);\n"
                 "}\n\n",
                 e->threads, e->name);
    mj_route_emit_entry(sb, &s.route, plan->entry[MJ_RA_ROUTE].name);
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
