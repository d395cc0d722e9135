/* permute's and combine's specs and arguments, forward and backward: validation and
 * normalisation, the vector plan of a row, and the argument checks the launches and the
 * references share. */
#include "ops/permute_combine/permute_combine.h"

#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"

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

moejit_status mj_permute_backward_normalize(const moejit_permute_backward_spec *spec, mj_permute_backward_shape *out)
{
    if (!spec || !out)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "permute_backward spec: %s is NULL", spec ? "output" : "spec");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("permute_backward spec", spec);
    if (st == MOEJIT_OK) st = check_hidden_dtype("permute_backward", spec->hidden, (int)spec->dtype);
    if (st != MOEJIT_OK) return st;
    out->hidden = spec->hidden;
    out->dtype = (int32_t)spec->dtype;
    out->has_scale = spec->has_scale != 0;
    return MOEJIT_OK;
}

moejit_status mj_combine_backward_normalize(const moejit_combine_backward_spec *spec, mj_combine_backward_shape *out)
{
    if (!spec || !out)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "combine_backward spec: %s is NULL", spec ? "output" : "spec");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("combine_backward spec", spec);
    if (st == MOEJIT_OK) st = check_hidden_dtype("combine_backward", spec->hidden, (int)spec->dtype);
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

int mj_rows_chunks(int hidden, int dtype)
{
    return hidden * mj_dtype_bytes(dtype) / mj_rows_vec_bytes(hidden, dtype);
}

int mj_rows_threads(int hidden, int dtype)
{
    const int warps = (mj_rows_chunks(hidden, dtype) + 31) / 32;
    return warps * 32 < ROWS_MAX_THREADS ? warps * 32 : ROWS_MAX_THREADS;
}

int mj_rows_slices(int hidden, int dtype)
{
    const int threads = mj_rows_threads(hidden, dtype);
    return (mj_rows_chunks(hidden, dtype) + threads - 1) / threads;
}

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
    if ((st = mj_check_pointer("permute", "sorted_ids", a->sorted_ids, 4)) != MOEJIT_OK) return st;
    if ((st = mj_check_pointer("permute", "out", a->out, elem)) != MOEJIT_OK) return st;
    if (a->num_tokens > 0) { /* with no tokens every row is padding: nothing is read */
        if ((st = mj_check_pointer("permute", "x", a->x, elem)) != MOEJIT_OK) return st;
        if (s->has_scale && (st = mj_check_pointer("permute", "ids (spec.has_scale = 1)", a->ids, 4)) != MOEJIT_OK)
            return st;
        if (s->has_scale && (st = mj_check_pointer("permute", "scale (spec.has_scale = 1)", a->scale, 4)) != MOEJIT_OK)
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
    if ((st = mj_check_pointer("combine", "slot_of", a->slot_of, 4)) != MOEJIT_OK) return st;
    if ((st = mj_check_pointer("combine", "weights", a->weights, 4)) != MOEJIT_OK) return st;
    if ((st = mj_check_pointer("combine", "out", a->out, elem)) != MOEJIT_OK) return st;
    if (a->num_rows > 0 && (st = mj_check_pointer("combine", "y", a->y, elem)) != MOEJIT_OK) return st;
    *nothing = 0;
    return MOEJIT_OK;
}

moejit_status mj_permute_backward_check_args(const mj_permute_backward_shape *s, const moejit_permute_backward_args *a,
                                             int *nothing)
{
    static const char op[] = "permute_backward";
    *nothing = 1;
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "permute_backward args: args is NULL");
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("permute_backward args", a)) != MOEJIT_OK) return st;
    if ((st = check_rows(op, "num_tokens", a->num_tokens, s->hidden, s->dtype)) != MOEJIT_OK) return st;
    if ((st = check_rows(op, "num_rows", a->num_rows, s->hidden, s->dtype)) != MOEJIT_OK) return st;
    if (a->topk < 1) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "permute_backward args: topk = %d must be >= 1", a->topk);
    if (a->num_tokens > INT64_MAX / a->topk)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "permute_backward args: num_tokens = %lld times topk = %d overflows",
                       (long long)a->num_tokens, a->topk);
    if (s->has_scale && a->num_experts < 1)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "permute_backward args: num_experts = %d must be >= 1 (spec.has_scale = 1)", a->num_experts);
    if (a->num_tokens == 0) return MOEJIT_OK;
    const size_t elem = (size_t)mj_dtype_bytes(s->dtype);
    if ((st = mj_check_pointer(op, "slot_of", a->slot_of, 4)) != MOEJIT_OK) return st;
    if ((st = mj_check_pointer(op, "grad_x", a->grad_x, elem)) != MOEJIT_OK) return st;
    if (a->num_rows > 0) { /* without rows every slot is dropped: only slot_of is read */
        if ((st = mj_check_pointer(op, "grad_out", a->grad_out, elem)) != MOEJIT_OK) return st;
        if (s->has_scale && (st = mj_check_pointer(op, "ids (spec.has_scale = 1)", a->ids, 4)) != MOEJIT_OK) return st;
        if (s->has_scale && (st = mj_check_pointer(op, "scale (spec.has_scale = 1)", a->scale, 4)) != MOEJIT_OK)
            return st;
    }
    *nothing = 0;
    return MOEJIT_OK;
}

moejit_status mj_combine_backward_check_args(const mj_combine_backward_shape *s, const moejit_combine_backward_args *a,
                                             int *nothing)
{
    static const char op[] = "combine_backward";
    *nothing = 1;
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "combine_backward args: args is NULL");
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("combine_backward args", a)) != MOEJIT_OK) return st;
    if ((st = mj_check_reserved("combine_backward args", "reserved0", &a->reserved0, 1, sizeof a->reserved0)) !=
        MOEJIT_OK)
        return st;
    if ((st = check_rows(op, "num_tokens", a->num_tokens, s->hidden, s->dtype)) != MOEJIT_OK) return st;
    if ((st = check_rows(op, "num_rows", a->num_rows, s->hidden, s->dtype)) != MOEJIT_OK) return st;
    if (a->topk < 1) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "combine_backward args: topk = %d must be >= 1", a->topk);
    if (a->num_tokens > INT32_MAX / a->topk)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "combine_backward args: num_tokens = %lld times topk = %d exceeds 2^31 - 1 (sorted_ids are int32)",
                       (long long)a->num_tokens, a->topk);
    const size_t elem = (size_t)mj_dtype_bytes(s->dtype);
    /* an output given is checked even when it has nothing to hold */
    if (a->grad_y && (st = mj_check_pointer(op, "grad_y", a->grad_y, elem)) != MOEJIT_OK) return st;
    if (a->grad_weights && (st = mj_check_pointer(op, "grad_weights", a->grad_weights, 4)) != MOEJIT_OK) return st;
    const int want_y = a->grad_y && a->num_rows > 0, want_w = a->grad_weights && a->num_tokens > 0;
    if (!want_y && !want_w) return MOEJIT_OK;
    if (want_y && (st = mj_check_pointer(op, "sorted_ids (grad_y wanted)", a->sorted_ids, 4)) != MOEJIT_OK) return st;
    if (a->num_tokens > 0) { /* with no tokens every row of grad_y is zero: only sorted_ids is read */
        if ((st = mj_check_pointer(op, "grad_out", a->grad_out, elem)) != MOEJIT_OK) return st;
        if ((st = mj_check_pointer(op, "slot_of", a->slot_of, 4)) != MOEJIT_OK) return st;
        if (want_y && (st = mj_check_pointer(op, "weights (grad_y wanted)", a->weights, 4)) != MOEJIT_OK) return st;
        if (want_w && a->num_rows > 0 && (st = mj_check_pointer(op, "y (grad_weights wanted)", a->y, elem)) != MOEJIT_OK)
            return st;
    }
    *nothing = 0;
    return MOEJIT_OK;
}
