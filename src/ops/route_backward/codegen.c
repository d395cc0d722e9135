/* route_backward's codegen: the launch plan, the parameter struct, the Cfg and the entry point —
 * where a route_backward shape becomes CUDA source (kernel_templates/route_backward.cuh, on the
 * helpers of route.cuh, which route's module emission brings along). */
#include "ops/route_backward/route_backward.h"

#include <stddef.h>
#include <stdio.h>

#include "common/dtype.h"
#include "jit/codegen.h"

extern const char mj_template_route_backward_cuh[];

MJ_DEFINE_SHAPE_OF(shape_of, mj_route_backward_shape)

static moejit_status route_backward_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_route_backward_shape s;
    return mj_kernel_id_result(mj_route_backward_normalize(&desc->route_backward, &s), id, &mj_op_route_backward, &s,
                               sizeof s);
}

static int route_backward_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_backward_shape s = shape_of(id);
    return mj_route_backward_module_name(&s, buf, cap);
}

static int route_backward_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_backward_shape s = shape_of(id);
    return mj_route_backward_describe(&s, buf, cap);
}

static void route_backward_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const int experts = shape_of(id).experts;
    plan->n_entries = 1;
    mj_entry_plan *e = &plan->entry[0];
    snprintf(e->name, sizeof e->name, "%s", plan->module);
    e->threads = 32 * MJ_ROUTE_WARPS_PER_BLOCK;
    e->items_per_block = mj_route_tokens_per_block(experts, MJ_ROUTE_WARPS_PER_BLOCK); /* route's layout */
    e->smem_bytes = 0; /* the kernel's shared memory is static */
}

static const mj_param_layout k_params =
    MJ_PARAM_LAYOUT(mj_route_backward_params, "RouteBackwardParams", MJ_ROUTE_BACKWARD_PARAMS);

static void emit_cfg(mj_strbuf *sb, const mj_route_backward_shape *s)
{
    char cap[48], factor[48];
    mj_float_literal(cap, sizeof cap, s->softcap);
    mj_float_literal(factor, sizeof factor, s->scaling_factor);
    mj_sb_printf(sb,
                 "struct MoejitRouteBackwardCfg {\n"
                 "    typedef %s Dtype;\n"
                 "    static constexpr int kExperts = %d;\n"
                 "    static constexpr int kTopK = %d;\n"
                 "    static constexpr int kScore = %d; // %s\n"
                 "    static constexpr float kSoftcap = %s;\n"
                 "    static constexpr bool kScoreAfterTopk = %s;\n"
                 "    static constexpr bool kRenormalize = %s;\n"
                 "    static constexpr bool kScaleOutput = %s;\n"
                 "    static constexpr float kScalingFactor = %s;\n"
                 "    static constexpr int kSharedSlots = %d;\n"
                 "    typedef %s IdT;\n"
                 "    static constexpr int kLanesPerToken = %d;\n"
                 "    static constexpr int kWarpsPerBlock = %d;\n"
                 "    static constexpr int kAuxStats = %d; // 1 load balance, 2 per sequence, 4 z-loss\n"
                 "    typedef %s SeqOffT;\n"
                 "};\n\n",
                 mj_dtype_struct(s->dtype), s->experts, s->topk, s->score, mj_score_name(s->score), cap,
                 s->score_after_topk ? "true" : "false", s->renormalize ? "true" : "false",
                 s->scale_output ? "true" : "false", factor, s->shared_slots, mj_index_dtype_ctype(s->id_dtype),
                 mj_route_lanes_per_token(s->experts), MJ_ROUTE_WARPS_PER_BLOCK, s->aux_stats,
                 mj_index_dtype_ctype(s->seq_offset_dtype));
}

static void route_backward_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_route_backward_shape s = shape_of(id);
    /* RouteParams, the score enums and route.cuh, whose helpers the template uses (and a
     * MoejitRouteCfg of the forward, unused) */
    const mj_route_shape r = mj_route_backward_forward_shape(&s);
    mj_route_emit_module(sb, &r);
    mj_emit_params(sb, &k_params);
    mj_sb_puts(sb, mj_template_route_backward_cuh);
    mj_sb_puts(sb, "\n// ---- this kernel's shape -------------------------------------------------\n");
    emit_cfg(sb, &s);
    mj_sb_printf(sb,
                 "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::RouteBackwardParams p)\n"
                 "{\n" MJ_ENTRY_PROLOGUE
                 "    mj::route_backward_kernel<MoejitRouteBackwardCfg>(p);\n"
                 "}\n",
                 plan->entry[0].threads, plan->entry[0].name);
}

const mj_op mj_op_route_backward = {
    .op = MOEJIT_OP_ROUTE_BACKWARD,
    .name = "route_backward",
    .normalize = route_backward_normalize_desc,
    .module_name = route_backward_module_name,
    .describe = route_backward_describe,
    .plan = route_backward_plan,
    .emit = route_backward_emit,
};
