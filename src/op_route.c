/* route as a kernel family: spec validation and normalisation, names, plan and codegen. */
#include "op_route.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"
#include "op.h"
#include "templates.h"

enum { ROUTE_WARP_MAX_EXPERTS = 1024 };

/* Lanes routing one token: a whole warp from 32 experts up, else the next power of two, so that a
 * warp takes several small tokens at once. Must match RouteSegment's use in route.cuh. */
static int lanes_per_token(int experts)
{
    int lanes = 1;
    while (lanes < experts && lanes < 32) lanes *= 2;
    return lanes;
}

#define SPEC_ERR(status, ...) mj_fail(status, "route spec: " __VA_ARGS__)

moejit_status mj_route_normalize(const moejit_route_spec *spec, mj_route_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route spec: spec is NULL");
    if (!out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route spec: output is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("route spec", spec)) != MOEJIT_OK) return st;

    const int e = spec->num_experts, k = spec->topk;
    if (e < 1) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_experts = %d must be >= 1", e);
    if (e > MOEJIT_MAX_EXPERTS)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "num_experts = %d exceeds the maximum %d", e, MOEJIT_MAX_EXPERTS);
    if (k < 1) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk = %d must be >= 1", k);
    if (k > e) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk = %d exceeds num_experts = %d", k, e);
    if (k > MOEJIT_MAX_TOPK)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "topk = %d exceeds the maximum %d", k, MOEJIT_MAX_TOPK);
    if (!mj_score_name((int)spec->score))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "score = %d is not a moejit_score (0 softmax, 1 sigmoid, 2 sqrt_softplus)",
                        (int)spec->score);
    if (!mj_dtype_name((int)spec->dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "dtype = %d is not a moejit_dtype (0 f32, 1 bf16, 2 f16)",
                        (int)spec->dtype);

    int g = spec->num_groups;
    if (g < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d must be >= 0", g);
    if (g == 0) g = 1;
    if (g > e) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d exceeds num_experts = %d", g, e);
    if (e % g) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d does not divide num_experts = %d", g, e);
    int tg = spec->topk_groups;
    if (tg < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk_groups = %d must be >= 0", tg);
    if (tg == 0) tg = g;
    if (tg > g) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk_groups = %d exceeds num_groups = %d", tg, g);
    if ((int64_t)k > (int64_t)tg * (e / g))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "topk = %d exceeds the %d experts of the topk_groups = %d kept groups (%d experts each)", k,
                        tg * (e / g), tg, e / g);
    if (g > 1 && !mj_group_score_name((int)spec->group_score))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "group_score = %d is not a moejit_group_score (0 max, 1 top2_sum)",
                        (int)spec->group_score);
    if (g > 1 && spec->group_score == MOEJIT_GROUP_SCORE_TOP2_SUM && e / g < 2)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "group_score = top2_sum needs >= 2 experts per group, got %d", e / g);

    /* Subnormal values are rejected: nobody means them, and dividing by one overflows. */
    const float cap = spec->softcap;
    if (!(cap >= 0.0f) || isinf(cap) || (cap > 0.0f && cap < FLT_MIN))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "softcap = %g must be 0 (off) or a finite positive normal float",
                        (double)cap);
    float factor = spec->routed_scaling_factor;
    if (factor == 0.0f) factor = 1.0f;
    if (!(factor >= FLT_MIN) || isinf(factor))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "routed_scaling_factor = %g must be a finite positive normal float (0 means 1.0)",
                        (double)spec->routed_scaling_factor);
    const int s = spec->shared_slots;
    if (s < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "shared_slots = %d must be >= 0", s);
    if (s > MOEJIT_MAX_TOPK)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "shared_slots = %d exceeds the maximum %d", s, MOEJIT_MAX_TOPK);

    out->experts = e;
    out->topk = k;
    out->score = (int32_t)spec->score;
    out->dtype = (int32_t)spec->dtype;
    /* Keeping all groups selects nothing: one kernel with the ungrouped shape. */
    const int grouped = g > 1 && tg < g;
    out->groups = grouped ? g : 1;
    out->topk_groups = grouped ? tg : 1;
    out->group_score = grouped ? (int32_t)spec->group_score : 0;
    out->has_bias = spec->has_bias != 0;
    out->softcap = cap;
    out->score_after_topk = spec->score_after_topk != 0;
    out->renormalize = spec->renormalize != 0;
    /* Scaling by exactly 1 is the identity: one kernel, not two. */
    out->scale_output = spec->scale_output != 0 && factor != 1.0f;
    out->scaling_factor = (out->scale_output || s > 0) ? factor : 1.0f;
    out->shared_slots = s;
    return MOEJIT_OK;
}


static moejit_status route_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    return mj_route_normalize(&desc->route, &id->u.route);
}

/* "2.5" → "2p5" so that numbers can appear in C identifiers. */
static void number_token(float v, char *buf, size_t cap)
{
    snprintf(buf, cap, "%g", (double)v);
    for (char *p = buf; *p; p++) {
        if (*p == '.') *p = 'p';
        else if (*p == '-') *p = 'm';
        else if (*p == '+') *p = 'x';
    }
}

static int route_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_shape *r = &id->u.route;
    char tmp[32];
    int n = 0;
    mj_appendf(buf, cap, &n, "moejit_route_%s_e%d_k%d", mj_score_name(r->score), r->experts, r->topk);
    if (r->groups > 1) {
        mj_appendf(buf, cap, &n, "_g%d_tg%d", r->groups, r->topk_groups);
        if (r->group_score == MOEJIT_GROUP_SCORE_TOP2_SUM) mj_appendf(buf, cap, &n, "_top2sum");
    }
    if (r->has_bias) mj_appendf(buf, cap, &n, "_bias");
    if (r->softcap > 0.0f) {
        number_token(r->softcap, tmp, sizeof tmp);
        mj_appendf(buf, cap, &n, "_cap%s", tmp);
    }
    if (r->score_after_topk) mj_appendf(buf, cap, &n, "_after");
    if (r->renormalize) mj_appendf(buf, cap, &n, "_renorm");
    if (r->scale_output || r->shared_slots) {
        number_token(r->scaling_factor, tmp, sizeof tmp);
        /* "u": the factor only feeds the shared slots, the routed weights stay unscaled */
        mj_appendf(buf, cap, &n, "_x%s%s", tmp, r->scale_output ? "" : "u");
    }
    if (r->shared_slots) mj_appendf(buf, cap, &n, "_s%d", r->shared_slots);
    mj_appendf(buf, cap, &n, "_%s", mj_dtype_name(r->dtype));
    return n;
}

static int route_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_shape *r = &id->u.route;
    int n = 0;
    mj_appendf(buf, cap, &n, "E=%d K=%d score=%s dtype=%s", r->experts, r->topk, mj_score_name(r->score),
               mj_dtype_name(r->dtype));
    if (r->groups > 1)
        mj_appendf(buf, cap, &n, " G=%d TG=%d group_score=%s", r->groups, r->topk_groups,
                   mj_group_score_name(r->group_score));
    if (r->has_bias) mj_appendf(buf, cap, &n, " bias");
    if (r->softcap > 0.0f) mj_appendf(buf, cap, &n, " softcap=%g", (double)r->softcap);
    if (r->score_after_topk) mj_appendf(buf, cap, &n, " score_after_topk");
    if (r->renormalize) mj_appendf(buf, cap, &n, " renormalize");
    if (r->scale_output) mj_appendf(buf, cap, &n, " scale=%g", (double)r->scaling_factor);
    if (r->shared_slots) mj_appendf(buf, cap, &n, " shared_slots=%d factor=%g", r->shared_slots, (double)r->scaling_factor);
    return n;
}

static void route_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const int experts = id->u.route.experts;
    plan->n_entries = 1;
    mj_entry_plan *e = &plan->entry[0];
    snprintf(e->name, sizeof e->name, "%s", plan->module);
    e->threads = 32 * MJ_ROUTE_WARPS_PER_BLOCK;
    /* tokens per block: segments of a warp each, or one token per block above 1024 experts */
    e->items_per_block =
        experts <= ROUTE_WARP_MAX_EXPERTS ? MJ_ROUTE_WARPS_PER_BLOCK * (32 / lanes_per_token(experts)) : 1;
    e->smem_bytes = 0; /* the kernels' shared memory is static */
}

void mj_route_emit_cfg(mj_strbuf *sb, const mj_route_shape *r)
{
    char cap[48], factor[48];
    mj_float_literal(cap, sizeof cap, r->softcap);
    mj_float_literal(factor, sizeof factor, r->scaling_factor);
    mj_sb_printf(sb,
                 "struct MoejitRouteCfg {\n"
                 "    typedef %s Dtype;\n"
                 "    static constexpr int kExperts = %d;\n"
                 "    static constexpr int kTopK = %d;\n"
                 "    static constexpr int kScore = %d; // %s\n"
                 "    static constexpr int kGroups = %d;\n"
                 "    static constexpr int kTopkGroups = %d;\n"
                 "    static constexpr int kGroupScore = %d;\n"
                 "    static constexpr bool kHasBias = %s;\n"
                 "    static constexpr float kSoftcap = %s;\n"
                 "    static constexpr bool kScoreAfterTopk = %s;\n"
                 "    static constexpr bool kRenormalize = %s;\n"
                 "    static constexpr bool kScaleOutput = %s;\n"
                 "    static constexpr float kScalingFactor = %s;\n"
                 "    static constexpr int kSharedSlots = %d;\n"
                 "    static constexpr int kLanesPerToken = %d;\n"
                 "    static constexpr int kWarpsPerBlock = %d;\n"
                 "};\n\n",
                 mj_dtype_struct(r->dtype), r->experts, r->topk, r->score, mj_score_name(r->score), r->groups,
                 r->topk_groups, r->group_score, r->has_bias ? "true" : "false", cap,
                 r->score_after_topk ? "true" : "false", r->renormalize ? "true" : "false",
                 r->scale_output ? "true" : "false", factor, r->shared_slots, lanes_per_token(r->experts),
                 MJ_ROUTE_WARPS_PER_BLOCK);
}

void mj_route_emit_entry(mj_strbuf *sb, const char *name)
{
    mj_sb_printf(sb,
                 "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::RouteParams p)\n"
                 "{\n"
                 "    mj::route_kernel<MoejitRouteCfg>(p);\n"
                 "}\n",
                 32 * MJ_ROUTE_WARPS_PER_BLOCK, name);
}

static void route_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    mj_sb_puts(sb, mj_template_route_cuh);
    mj_sb_puts(sb, "\n// ---- this kernel's shape -------------------------------------------------\n");
    mj_route_emit_cfg(sb, &id->u.route);
    mj_route_emit_entry(sb, plan->entry[0].name);
}

const mj_op mj_op_route = {
    .op = MOEJIT_OP_ROUTE,
    .name = "route",
    .normalize = route_normalize_desc,
    .module_name = route_module_name,
    .describe = route_describe,
    .plan = route_plan,
    .emit = route_emit,
};
