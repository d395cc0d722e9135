/* permute's and combine's codegen: the launch plans, parameter structs, Cfgs and entry points —
 * where a shape becomes CUDA source (kernel_templates/permute_combine.cuh). */
#include "ops/permute_combine/permute_combine.h"

#include <stddef.h>
#include <stdio.h>

#include "common/dtype.h"
#include "jit/codegen.h"

extern const char mj_template_permute_combine_cuh[];

static const mj_param_layout k_permute_params = MJ_PARAM_LAYOUT(mj_permute_params, "PermuteParams", MJ_PERMUTE_PARAMS);
static const mj_param_layout k_combine_params = MJ_PARAM_LAYOUT(mj_combine_params, "CombineParams", MJ_COMBINE_PARAMS);

MJ_DEFINE_SHAPE_OF(permute_shape, mj_permute_shape)

MJ_DEFINE_SHAPE_OF(combine_shape, mj_combine_shape)

static moejit_status permute_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_permute_shape s;
    return mj_kernel_id_result(mj_permute_normalize(&desc->permute, &s), id, &mj_op_permute, &s, sizeof s);
}

static moejit_status combine_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    mj_combine_shape s;
    return mj_kernel_id_result(mj_combine_normalize(&desc->combine, &s), id, &mj_op_combine, &s, sizeof s);
}

int mj_rows_module_name(const char *op, int hidden, int dtype, int has_scale, char *buf, size_t cap)
{
    return snprintf(buf, cap, "moejit_%s_h%d_%s%s", op, hidden, mj_dtype_name(dtype), has_scale ? "_scale" : "");
}

int mj_rows_describe(int hidden, int dtype, int has_scale, char *buf, size_t cap)
{
    return snprintf(buf, cap, "H=%d dtype=%s%s", hidden, mj_dtype_name(dtype), has_scale ? " scale" : "");
}

static int permute_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_permute_shape s = permute_shape(id);
    return mj_rows_module_name("permute", s.hidden, s.dtype, s.has_scale, buf, cap);
}

static int combine_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_combine_shape s = combine_shape(id);
    return mj_rows_module_name("combine", s.hidden, s.dtype, 0, buf, cap);
}

static int permute_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_permute_shape s = permute_shape(id);
    return mj_rows_describe(s.hidden, s.dtype, s.has_scale, buf, cap);
}

static int combine_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_combine_shape s = combine_shape(id);
    return mj_rows_describe(s.hidden, s.dtype, 0, buf, cap);
}

/* One block per row (permute: per output row; combine: per token; their backward: per token). */
void mj_rows_plan(int hidden, int dtype, mj_kernel_plan *plan)
{
    plan->n_entries = 1;
    mj_entry_plan *e = &plan->entry[0];
    snprintf(e->name, sizeof e->name, "%s", plan->module);
    e->threads = mj_rows_threads(hidden, dtype);
    e->items_per_block = 1;
    e->smem_bytes = 0;
}

static void permute_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_permute_shape s = permute_shape(id);
    mj_rows_plan(s.hidden, s.dtype, plan);
}

static void combine_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    const mj_combine_shape s = combine_shape(id);
    mj_rows_plan(s.hidden, s.dtype, plan);
}

/* The template once, then this kernel's Cfg and entry point. */
static void rows_emit(mj_strbuf *sb, const char *cfg, int hidden, int dtype, const char *extra, const mj_kernel_plan *plan,
                      const char *params, const char *body)
{
    const mj_entry_plan *e = &plan->entry[0];
    mj_emit_params(sb, &k_permute_params); /* the template holds both kernels */
    mj_emit_params(sb, &k_combine_params);
    mj_sb_puts(sb, mj_template_permute_combine_cuh);
    mj_sb_printf(sb,
                 "\n// ---- this kernel's shape -------------------------------------------------\n"
                 "struct %s {\n"
                 "    typedef %s Dtype;\n"
                 "    static constexpr int kHidden = %d;\n"
                 "    static constexpr int kVecBytes = %d;\n"
                 "    static constexpr int kThreads = %d;\n"
                 "%s"
                 "};\n\n"
                 "extern \"C\" __global__ void __launch_bounds__(%d) %s(const mj::%s p)\n"
                 "{\n" MJ_ENTRY_PROLOGUE
                 "    mj::%s<%s>(p);\n"
                 "}\n",
                 cfg, mj_dtype_struct(dtype), hidden, mj_rows_vec_bytes(hidden, dtype), e->threads, extra, e->threads,
                 e->name, params, body, cfg);
}

static void permute_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_permute_shape s = permute_shape(id);
    rows_emit(sb, "MoejitPermuteCfg", s.hidden, s.dtype,
              s.has_scale ? "    static constexpr bool kHasScale = true;\n" : "    static constexpr bool kHasScale = false;\n",
              plan, "PermuteParams", "permute_rows");
}

static void combine_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_combine_shape s = combine_shape(id);
    rows_emit(sb, "MoejitCombineCfg", s.hidden, s.dtype, "", plan, "CombineParams", "combine_rows");
}

const mj_op mj_op_permute = {
    .op = MOEJIT_OP_PERMUTE,
    .name = "permute",
    .normalize = permute_normalize_desc,
    .module_name = permute_module_name,
    .describe = permute_describe,
    .plan = permute_plan,
    .emit = permute_emit,
};

const mj_op mj_op_combine = {
    .op = MOEJIT_OP_COMBINE,
    .name = "combine",
    .normalize = combine_normalize_desc,
    .module_name = combine_module_name,
    .describe = combine_describe,
    .plan = combine_plan,
    .emit = combine_emit,
};
