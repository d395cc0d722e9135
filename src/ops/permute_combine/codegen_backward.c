/* permute's and combine's backward codegen: the launch plans, parameter structs, Cfgs and entry
 * points — where a shape becomes CUDA source (kernel_templates/permute_combine.cuh for the row
 * vectors, then permute_combine_backward.cuh). */
#include "ops/permute_combine/permute_combine.h"

#include <stddef.h>
#include <stdio.h>

#include "common/dtype.h"
#include "jit/codegen.h"

extern const char mj_template_permute_combine_cuh[];
extern const char mj_template_permute_combine_backward_cuh[];

static const mj_param_layout k_permute_params = MJ_PARAM_LAYOUT(mj_permute_params, "PermuteParams", MJ_PERMUTE_PARAMS);
static const mj_param_layout k_combine_params = MJ_PARAM_LAYOUT(mj_combine_params, "CombineParams", MJ_COMBINE_PARAMS);
static const mj_param_layout k_permute_backward_params =
    MJ_PARAM_LAYOUT(mj_permute_backward_params, "PermuteBackwardParams", MJ_PERMUTE_BACKWARD_PARAMS);
static const mj_param_layout k_combine_backward_params =
    MJ_PARAM_LAYOUT(mj_combine_backward_params, "CombineBackwardParams", MJ_COMBINE_BACKWARD_PARAMS);

MJ_DEFINE_SHAPE_OF(permute_backward_shape, mj_permute_backward_shape)

MJ_DEFINE_SHAPE_OF(combine_backward_shape, mj_combine_backward_shape)

static moejit_status permute_backward_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_permute_backward_shape s;
    return mj_kernel_id_result(mj_permute_backward_normalize(&desc->permute_backward, &s), id, &mj_op_permute_backward,
                               &s, sizeof s);
}

static moejit_status combine_backward_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_combine_backward_shape s;
    return mj_kernel_id_result(mj_combine_backward_normalize(&desc->combine_backward, &s), id, &mj_op_combine_backward,
                               &s, sizeof s);
}

static int permute_backward_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_permute_backward_shape s = permute_backward_shape(id);
    return mj_rows_module_name("permute_backward", s.hidden, s.dtype, s.has_scale, buf, cap);
}

static int combine_backward_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_combine_backward_shape s = combine_backward_shape(id);
    return mj_rows_module_name("combine_backward", s.hidden, s.dtype, 0, buf, cap);
}

static int permute_backward_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_permute_backward_shape s = permute_backward_shape(id);
    return mj_rows_describe(s.hidden, s.dtype, s.has_scale, buf, cap);
}

static int combine_backward_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_combine_backward_shape s = combine_backward_shape(id);
    return mj_rows_describe(s.hidden, s.dtype, 0, buf, cap);
}

/* The forward's block (it fixes grad_weights' summation order) for both entries: the throughput
 * one (a token a block) and the latency one (permute: a slice of a row a block; combine: a
 * (token, slot) pair a block), chosen at launch (mj_rows_backward_latency). */
static void backward_plan(int hidden, int dtype, mj_kernel_plan *plan)
{
    const int threads = mj_rows_threads(hidden, dtype);
    mj_plan_entry(plan, MJ_ROWS_BACKWARD_THROUGHPUT, "", threads, 1, 0);
    mj_plan_entry(plan, MJ_ROWS_BACKWARD_LATENCY, "_small", threads, 1, 0);
}

static void permute_backward_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_permute_backward_shape s = permute_backward_shape(id);
    backward_plan(s.hidden, s.dtype, plan);
}

static void combine_backward_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_combine_backward_shape s = combine_backward_shape(id);
    backward_plan(s.hidden, s.dtype, plan);
}

/* Both templates once, then this kernel's Cfg and its two entry points (bodies[entry]). */
static void backward_emit(mj_strbuf *sb, const char *cfg, int hidden, int dtype, int has_scale,
                          const mj_kernel_plan *plan, const char *params, const char *const bodies[2])
{
    const mj_entry_plan *e = &plan->entry[0];
    mj_emit_params(sb, &k_permute_params); /* the forward template declares its kernels too */
    mj_emit_params(sb, &k_combine_params);
    mj_emit_params(sb, &k_permute_backward_params);
    mj_emit_params(sb, &k_combine_backward_params);
    mj_sb_puts(sb, mj_template_permute_combine_cuh);
    mj_sb_puts(sb, mj_template_permute_combine_backward_cuh);
    mj_sb_printf(sb,
                 "\n// ---- this kernel's shape -------------------------------------------------\n"
                 "struct %s {\n"
                 "    typedef %s Dtype;\n"
                 "    static constexpr int kHidden = %d;\n"
                 "    static constexpr int kVecBytes = %d;\n"
                 "    static constexpr int kThreads = %d;\n"
                 "    static constexpr bool kHasScale = %s;\n"
                 "    static constexpr int kZeroRows = %d;\n"
                 "};\n",
                 cfg, mj_dtype_struct(dtype), hidden, mj_rows_vec_bytes(hidden, dtype), e->threads,
                 has_scale ? "true" : "false", MJ_COMBINE_BACKWARD_ZERO_ROWS);
    for (int i = 0; i < MJ_ROWS_BACKWARD_ENTRIES; i++)
        mj_sb_printf(sb,
                     "\nextern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::%s p)\n"
                     "{\n" MJ_ENTRY_PROLOGUE
                     "    mj::%s>(p);\n"
                     "}\n",
                     plan->entry[i].threads, plan->entry[i].name, params, bodies[i]);
}

static void permute_backward_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_permute_backward_shape s = permute_backward_shape(id);
    static const char *const bodies[MJ_ROWS_BACKWARD_ENTRIES] = {"permute_backward_rows<MoejitPermuteBackwardCfg",
                                                                 "permute_backward_slices<MoejitPermuteBackwardCfg"};
    backward_emit(sb, "MoejitPermuteBackwardCfg", s.hidden, s.dtype, s.has_scale, plan, "PermuteBackwardParams", bodies);
}

static void combine_backward_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_combine_backward_shape s = combine_backward_shape(id);
    static const char *const bodies[MJ_ROWS_BACKWARD_ENTRIES] = {"combine_backward_rows<MoejitCombineBackwardCfg, false",
                                                                 "combine_backward_rows<MoejitCombineBackwardCfg, true"};
    backward_emit(sb, "MoejitCombineBackwardCfg", s.hidden, s.dtype, 0, plan, "CombineBackwardParams", bodies);
}

const mj_op mj_op_permute_backward = {
    .op = MOEJIT_OP_PERMUTE_BACKWARD,
    .name = "permute_backward",
    .normalize = permute_backward_normalize_desc,
    .module_name = permute_backward_module_name,
    .describe = permute_backward_describe,
    .plan = permute_backward_plan,
    .emit = permute_backward_emit,
};

const mj_op mj_op_combine_backward = {
    .op = MOEJIT_OP_COMBINE_BACKWARD,
    .name = "combine_backward",
    .normalize = combine_backward_normalize_desc,
    .module_name = combine_backward_module_name,
    .describe = combine_backward_describe,
    .plan = combine_backward_plan,
    .emit = combine_backward_emit,
};
