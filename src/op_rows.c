/* permute and combine as kernel families: validation, names, launch plan and codegen. */
#include "op_rows.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "op.h"
#include "templates.h"

enum { ROWS_MAX_THREADS = 256 };

static moejit_status check_hidden_dtype(const char *op, int32_t hidden, int dtype)
{
    if (hidden < 1) return mj_fail(MOEJIT_ERR_INVALID_SPEC, "%s spec: hidden = %d must be >= 1", op, hidden);
    if (hidden > MOEJIT_MAX_HIDDEN)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED, "%s spec: hidden = %d exceeds the maximum %d", op, hidden, MOEJIT_MAX_HIDDEN);
    if (!mj_dtype_name(dtype))
        return mj_fail(MOEJIT_ERR_INVALID_SPEC, "%s spec: dtype = %d is not a moejit_dtype (0 f32, 1 bf16, 2 f16)", op, dtype);
    return MOEJIT_OK;
}

moejit_status mj_permute_normalize(const moejit_permute_spec *spec, mj_permute_shape *out)
{
    if (!spec || !out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "permute spec: %s is NULL", spec ? "output" : "spec");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("permute spec", spec);
    if (st == MOEJIT_OK) st = check_hidden_dtype("permute", spec->hidden, (int)spec->dtype);
    if (st != MOEJIT_OK) return st;
    out->hidden = spec->hidden;
    out->dtype = (int32_t)spec->dtype;
    out->has_scale = spec->has_scale != 0;
    return MOEJIT_OK;
}

moejit_status mj_combine_normalize(const moejit_combine_spec *spec, mj_combine_shape *out)
{
    if (!spec || !out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "combine spec: %s is NULL", spec ? "output" : "spec");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("combine spec", spec);
    if (st == MOEJIT_OK) st = check_hidden_dtype("combine", spec->hidden, (int)spec->dtype);
    if (st != MOEJIT_OK) return st;
    out->hidden = spec->hidden;
    out->dtype = (int32_t)spec->dtype;
    return MOEJIT_OK;
}

int mj_rows_vec_bytes(int hidden, int dtype)
{
    const int elem = mj_dtype_bytes(dtype), row = hidden * elem;
    return row % 16 == 0 ? 16 : row % 8 == 0 ? 8 : row % 4 == 0 ? 4 : elem;
}

int mj_rows_threads(int hidden, int dtype)
{
    const int vecs = hidden * mj_dtype_bytes(dtype) / mj_rows_vec_bytes(hidden, dtype);
    const int warps = (vecs + 31) / 32;
    return warps * 32 < ROWS_MAX_THREADS ? warps * 32 : ROWS_MAX_THREADS;
}

static moejit_status permute_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    return mj_permute_normalize(&desc->permute, &id->u.permute);
}

static moejit_status combine_normalize_desc(const moejit_kernel_desc *desc, mj_kernel_id *id)
{
    return mj_combine_normalize(&desc->combine, &id->u.combine);
}

static int permute_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_permute_shape *s = &id->u.permute;
    return snprintf(buf, cap, "moejit_permute_h%d_%s%s", s->hidden, mj_dtype_name(s->dtype), s->has_scale ? "_scale" : "");
}

static int combine_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_combine_shape *s = &id->u.combine;
    return snprintf(buf, cap, "moejit_combine_h%d_%s", s->hidden, mj_dtype_name(s->dtype));
}

static int permute_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_permute_shape *s = &id->u.permute;
    return snprintf(buf, cap, "H=%d dtype=%s%s", s->hidden, mj_dtype_name(s->dtype), s->has_scale ? " scale" : "");
}

static int combine_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_combine_shape *s = &id->u.combine;
    return snprintf(buf, cap, "H=%d dtype=%s", s->hidden, mj_dtype_name(s->dtype));
}

/* One block per row (permute: per output row; combine: per token). */
static void rows_plan(int hidden, int dtype, mj_kernel_plan *plan)
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
    rows_plan(id->u.permute.hidden, id->u.permute.dtype, plan);
}

static void combine_plan(const mj_kernel_id *id, mj_kernel_plan *plan)
{
    rows_plan(id->u.combine.hidden, id->u.combine.dtype, plan);
}

/* The template once, then this kernel's Cfg and entry point. */
static void rows_emit(mj_strbuf *sb, const char *cfg, int hidden, int dtype, const char *extra, const mj_kernel_plan *plan,
                      const char *params, const char *body)
{
    const mj_entry_plan *e = &plan->entry[0];
    mj_sb_puts(sb, mj_template_rows_cuh);
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
                 "{\n"
                 "    mj::%s<%s>(p);\n"
                 "}\n",
                 cfg, mj_dtype_struct(dtype), hidden, mj_rows_vec_bytes(hidden, dtype), e->threads, extra, e->threads,
                 e->name, params, body, cfg);
}

static void permute_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    const mj_permute_shape *s = &id->u.permute;
    rows_emit(sb, "MoejitPermuteCfg", s->hidden, s->dtype,
              s->has_scale ? "    static constexpr bool kHasScale = true;\n" : "    static constexpr bool kHasScale = false;\n",
              plan, "PermuteParams", "permute_rows");
}

static void combine_emit(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan)
{
    rows_emit(sb, "MoejitCombineCfg", id->u.combine.hidden, id->u.combine.dtype, "", plan, "CombineParams",
              "combine_rows");
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
