/* route's codegen: the launch plan, the parameter struct, the Cfg and the entry point — where a
 * route shape becomes CUDA source (kernel_templates/route.cuh is the code it configures). */
#include "ops/route/route.h"

#include <stddef.h>
#include <stdio.h>

#include "common/dtype.h"
#include "jit/codegen.h"
#include "jit/launch.h"

extern const char mj_template_route_cuh[];

enum { ROUTE_WARP_MAX_EXPERTS = 1024 };

int mj_route_lanes_per_token(int experts)
{
    int lanes = 1;
    while (lanes < experts && lanes < 32) lanes *= 2;
    return lanes;
}

int mj_route_tokens_per_block(int experts, int warps)
{
    /* segments of a warp each, or one token per block above 1024 experts */
    return experts <= ROUTE_WARP_MAX_EXPERTS ? warps * (32 / mj_route_lanes_per_token(experts)) : 1;
}

int mj_route_warps_per_block(const mj_route_shape *r)
{
    enum { AUX_WARPS = 16, SMEM_BUDGET = 40 << 10 };
    if (!(r->aux_stats & (MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE)) || r->experts > ROUTE_WARP_MAX_EXPERTS)
        return MJ_ROUTE_WARPS_PER_BLOCK;
    /* route.cuh's static shared memory: a row of E sums per segment, and E keys per segment when
     * groups are picked through shared memory (counted whenever groups are dropped) */
    const int grouped = r->groups > 1 && r->topk_groups < r->groups;
    const int64_t segments = (int64_t)AUX_WARPS * (32 / mj_route_lanes_per_token(r->experts));
    const int64_t smem = segments * r->experts * 4 * (1 + grouped) + (int64_t)r->experts * 4;
    return smem <= SMEM_BUDGET ? AUX_WARPS : MJ_ROUTE_WARPS_PER_BLOCK;
}

int mj_route_launch_for(const mj_route_shape *r, int64_t tokens, int64_t *blocks)
{
    const int main_warps = mj_route_warps_per_block(r);
    const int small = main_warps > MJ_ROUTE_WARPS_PER_BLOCK && tokens <= MJ_ROUTE_AUX_SMALL_TOKENS;
    const int warps = small ? MJ_ROUTE_WARPS_PER_BLOCK : main_warps;
    *blocks = mj_blocks_for(tokens, mj_route_tokens_per_block(r->experts, warps));
    /* Accumulating statistics: few enough blocks that each segment adds its sums once (route.cuh) */
    if ((r->aux_stats & (MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE)) && *blocks > MJ_ROUTE_AUX_MAX_BLOCKS)
        *blocks = MJ_ROUTE_AUX_MAX_BLOCKS;
    return small ? MJ_ROUTE_ENTRY_SMALL : MJ_ROUTE_ENTRY_MAIN;
}

MJ_DEFINE_SHAPE_OF(shape_of, mj_route_shape)

static moejit_status route_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_route_shape r;
    return mj_kernel_id_result(mj_route_normalize(&desc->route, &r), id, &mj_op_route, &r, sizeof r);
}

static int route_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_shape r = shape_of(id);
    return mj_route_module_name(&r, buf, cap);
}

static int route_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_route_shape r = shape_of(id);
    return mj_route_describe(&r, buf, cap);
}

static void route_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_route_shape r = shape_of(id);
    const int warps = mj_route_warps_per_block(&r);
    /* the kernels' shared memory is static */
    mj_plan_entry(plan, MJ_ROUTE_ENTRY_MAIN, "", 32 * warps, mj_route_tokens_per_block(r.experts, warps), 0);
    if (warps > MJ_ROUTE_WARPS_PER_BLOCK)
        mj_plan_entry(plan, MJ_ROUTE_ENTRY_SMALL, "_small", 32 * MJ_ROUTE_WARPS_PER_BLOCK,
                      mj_route_tokens_per_block(r.experts, MJ_ROUTE_WARPS_PER_BLOCK), 0);
}

static const mj_param_layout k_params = MJ_PARAM_LAYOUT(mj_route_params, "RouteParams", MJ_ROUTE_PARAMS);

/* The enum values route.cuh compares Cfg::kScore, Cfg::kGroupScore and Cfg::kReplay with. */
static const mj_enum_value k_enums[] = {
    {"kScoreSoftmax", MOEJIT_SCORE_SOFTMAX},
    {"kScoreSigmoid", MOEJIT_SCORE_SIGMOID},
    {"kScoreSqrtSoftplus", MOEJIT_SCORE_SQRT_SOFTPLUS},
    {"kGroupMax", MOEJIT_GROUP_SCORE_MAX},
    {"kGroupTop2Sum", MOEJIT_GROUP_SCORE_TOP2_SUM},
    {"kReplayRecord", MOEJIT_REPLAY_RECORD},
    {"kReplayGiven", MOEJIT_REPLAY_GIVEN},
};

static void emit_cfg(mj_strbuf *sb, const mj_route_shape *r)
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
                 "    // serving options\n"
                 "    static constexpr bool kPadded = %s;\n"
                 "    typedef %s IdT;\n"
                 "    static constexpr int kMaxReplicas = %d;\n"
                 "    static constexpr int kPhysicalExperts = %d;\n"
                 "    static constexpr int kLoadCounter = %d; // 0 none, 1 int32, 2 int64\n"
                 "    static constexpr int kReplay = %d; // 0 off, 1 record, 2 given\n"
                 "    typedef %s LogicalIdT;\n"
                 "    static constexpr int kAuxStats = %d; // 1 load balance, 2 per sequence, 4 z-loss\n"
                 "    typedef %s SeqOffT;\n"
                 "};\n\n",
                 mj_dtype_struct(r->dtype), r->experts, r->topk, r->score, mj_score_name(r->score), r->groups,
                 r->topk_groups, r->group_score, r->has_bias ? "true" : "false", cap,
                 r->score_after_topk ? "true" : "false", r->renormalize ? "true" : "false",
                 r->scale_output ? "true" : "false", factor, r->shared_slots, mj_route_lanes_per_token(r->experts),
                 mj_route_warps_per_block(r), r->padded ? "true" : "false", mj_index_dtype_ctype(r->id_dtype),
                 r->max_replicas, r->physical_experts, r->load_counter, r->replay,
                 mj_index_dtype_ctype(r->logical_id_dtype), r->aux_stats,
                 mj_index_dtype_ctype(r->seq_offset_dtype));
}

/* The launch bounds' second figure: with 16 warps a block (statistics) and up to 8 experts a lane,
 * three blocks an SM, which holds the registers at 40 without spills (about 52 unbounded: two
 * blocks, 32 warps an SM); more experts a lane (kimi-k2's 12) would spill at 40. */
static const char *min_blocks(const mj_route_shape *r)
{
    const int per_lane = (r->experts + mj_route_lanes_per_token(r->experts) - 1) / mj_route_lanes_per_token(r->experts);
    return mj_route_warps_per_block(r) > MJ_ROUTE_WARPS_PER_BLOCK && per_lane <= 8 ? ", 3" : "";
}

/* An entry point running route_kernel<cfg> in blocks of `threads` (`bounds`: the launch bounds'
 * second figure, with its comma, or ""). */
static void emit_kernel(mj_strbuf *sb, const char *cfg, int threads, const char *bounds, const char *name)
{
    mj_sb_printf(sb,
                 "extern \"C\" __global__ void __launch_bounds__(%d%s) %s(const mj::RouteParams p)\n"
                 "{\n" MJ_ENTRY_PROLOGUE
                 "    mj::route_kernel<%s>(p);\n"
                 "}\n",
                 threads, bounds, name, cfg);
}

void mj_route_emit_entry(mj_strbuf *sb, const mj_route_shape *r, const char *name)
{
    emit_kernel(sb, "MoejitRouteCfg", 32 * mj_route_warps_per_block(r), min_blocks(r), name);
}

void mj_route_emit_module(mj_strbuf *sb, const mj_route_shape *r)
{
    mj_emit_params(sb, &k_params);
    mj_emit_enum(sb, k_enums, sizeof k_enums / sizeof k_enums[0]);
    mj_sb_puts(sb, mj_template_route_cuh);
    mj_sb_puts(sb, "\n// ---- this kernel's shape -------------------------------------------------\n");
    emit_cfg(sb, r);
}

static void route_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_route_shape r = shape_of(id);
    mj_route_emit_module(sb, &r);
    mj_route_emit_entry(sb, &r, plan->entry[MJ_ROUTE_ENTRY_MAIN].name);
    if (plan->n_entries > MJ_ROUTE_ENTRY_SMALL) {
        mj_sb_printf(sb,
                     "\n// Small batches: the same kernel in blocks of %d warps (route.h, MJ_ROUTE_ENTRY_SMALL).\n"
                     "struct MoejitRouteCfgSmall : MoejitRouteCfg {\n"
                     "    static constexpr int kWarpsPerBlock = %d;\n"
                     "};\n\n",
                     MJ_ROUTE_WARPS_PER_BLOCK, MJ_ROUTE_WARPS_PER_BLOCK);
        emit_kernel(sb, "MoejitRouteCfgSmall", 32 * MJ_ROUTE_WARPS_PER_BLOCK, "", plan->entry[MJ_ROUTE_ENTRY_SMALL].name);
    }
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
