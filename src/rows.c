/* moejit_permute / moejit_combine: argument checks, then lookup (or first-use build) and one launch. */
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "launch.h"

/* Must match mj::PermuteParams and mj::CombineParams in kernel_templates/rows.cuh. */
typedef struct mj_permute_params {
    const void *x;
    const int32_t *sorted_ids;
    const int32_t *ids;
    const float *scale;
    void *out;
    int64_t num_tokens;
    int64_t num_rows;
    int32_t topk;
    int32_t num_experts;
} mj_permute_params;

typedef struct mj_combine_params {
    const void *y;
    const int32_t *slot_of;
    const float *weights;
    void *out;
    int64_t num_tokens;
    int64_t num_rows;
    int32_t topk;
    int32_t reserved;
} mj_combine_params;

/* rows × H elements must be addressable in bytes. */
static moejit_status check_rows(const char *op, const char *field, int64_t rows, int hidden, int dtype)
{
    if (rows < 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: %s = %lld must be >= 0", op, field, (long long)rows);
    const int64_t row_bytes = (int64_t)hidden * mj_dtype_bytes(dtype);
    if (rows > INT64_MAX / row_bytes)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: %s = %lld rows of %lld bytes overflow", op, field,
                       (long long)rows, (long long)row_bytes);
    return MOEJIT_OK;
}

moejit_status mj_permute_check_args(const mj_permute_shape *s, const moejit_permute_args *a, int *nothing)
{
    *nothing = 1;
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "permute args: args is NULL");
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("permute args", a)) != MOEJIT_OK) return st;
    if ((st = check_rows("permute", "num_tokens", a->num_tokens, s->hidden, s->dtype)) != MOEJIT_OK) return st;
    if ((st = check_rows("permute", "num_rows", a->num_rows, s->hidden, s->dtype)) != MOEJIT_OK) return st;
    if (a->topk < 1) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "permute args: topk = %d must be >= 1", a->topk);
    if (a->num_tokens > INT32_MAX / a->topk)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "permute args: num_tokens = %lld times topk = %d exceeds 2^31 - 1 (sorted_ids are int32)",
                       (long long)a->num_tokens, a->topk);
    if (s->has_scale && a->num_experts < 1)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "permute args: num_experts = %d must be >= 1 (spec.has_scale = 1)",
                       a->num_experts);
    if (a->num_rows == 0) return MOEJIT_OK;
    const size_t elem = (size_t)mj_dtype_bytes(s->dtype);
    if ((st = mj_check_device_ptr("permute", "sorted_ids", a->sorted_ids, 4)) != MOEJIT_OK) return st;
    if ((st = mj_check_device_ptr("permute", "out", a->out, elem)) != MOEJIT_OK) return st;
    if (a->num_tokens > 0) { /* with no tokens every row is padding: nothing is read */
        if ((st = mj_check_device_ptr("permute", "x", a->x, elem)) != MOEJIT_OK) return st;
        if (s->has_scale && (st = mj_check_device_ptr("permute", "ids (spec.has_scale = 1)", a->ids, 4)) != MOEJIT_OK)
            return st;
        if (s->has_scale && (st = mj_check_device_ptr("permute", "scale (spec.has_scale = 1)", a->scale, 4)) != MOEJIT_OK)
            return st;
    }
    *nothing = 0;
    return MOEJIT_OK;
}

moejit_status mj_combine_check_args(const mj_combine_shape *s, const moejit_combine_args *a, int *nothing)
{
    *nothing = 1;
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "combine args: args is NULL");
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("combine args", a)) != MOEJIT_OK) return st;
    if ((st = check_rows("combine", "num_tokens", a->num_tokens, s->hidden, s->dtype)) != MOEJIT_OK) return st;
    if ((st = check_rows("combine", "num_rows", a->num_rows, s->hidden, s->dtype)) != MOEJIT_OK) return st;
    if (a->topk < 1) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "combine args: topk = %d must be >= 1", a->topk);
    if ((st = mj_check_reserved("combine args", "reserved0", &a->reserved0, 1, sizeof a->reserved0)) != MOEJIT_OK)
        return st;
    if (a->num_tokens > INT64_MAX / a->topk)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "combine args: num_tokens = %lld times topk = %d overflows",
                       (long long)a->num_tokens, a->topk);
    if (a->num_tokens == 0) return MOEJIT_OK;
    const size_t elem = (size_t)mj_dtype_bytes(s->dtype);
    if ((st = mj_check_device_ptr("combine", "slot_of", a->slot_of, 4)) != MOEJIT_OK) return st;
    if ((st = mj_check_device_ptr("combine", "weights", a->weights, 4)) != MOEJIT_OK) return st;
    if ((st = mj_check_device_ptr("combine", "out", a->out, elem)) != MOEJIT_OK) return st;
    if (a->num_rows > 0 && (st = mj_check_device_ptr("combine", "y", a->y, elem)) != MOEJIT_OK) return st;
    *nothing = 0;
    return MOEJIT_OK;
}

moejit_status moejit_permute(moejit_ctx *ctx, const moejit_permute_spec *spec, const moejit_permute_args *args,
                             moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_permute: ctx is NULL");
    mj_kernel_id id;
    memset(&id, 0, sizeof id);
    id.op = MOEJIT_OP_PERMUTE;
    moejit_status st = mj_permute_normalize(spec, &id.u.permute);
    int nothing;
    if (st == MOEJIT_OK) st = mj_permute_check_args(&id.u.permute, args, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    mj_permute_params p = {
        .x = args->x,
        .sorted_ids = args->sorted_ids,
        .ids = id.u.permute.has_scale ? args->ids : NULL,
        .scale = id.u.permute.has_scale ? args->scale : NULL,
        .out = args->out,
        .num_tokens = args->num_tokens,
        .num_rows = args->num_rows,
        .topk = args->topk,
        .num_experts = id.u.permute.has_scale ? args->num_experts : 0,
    };
    return mj_launch(ctx, k, 0, args->num_rows, &p, stream);
}

moejit_status moejit_combine(moejit_ctx *ctx, const moejit_combine_spec *spec, const moejit_combine_args *args,
                             moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_combine: ctx is NULL");
    mj_kernel_id id;
    memset(&id, 0, sizeof id);
    id.op = MOEJIT_OP_COMBINE;
    moejit_status st = mj_combine_normalize(spec, &id.u.combine);
    int nothing;
    if (st == MOEJIT_OK) st = mj_combine_check_args(&id.u.combine, args, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    mj_combine_params p = {
        .y = args->y,
        .slot_of = args->slot_of,
        .weights = args->weights,
        .out = args->out,
        .num_tokens = args->num_tokens,
        .num_rows = args->num_rows,
        .topk = args->topk,
    };
    return mj_launch(ctx, k, 0, args->num_tokens, &p, stream);
}
