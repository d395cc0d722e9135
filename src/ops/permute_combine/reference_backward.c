/* C references of permute's and combine's backward: the definition the GPU kernels match bit for
 * bit, grad_weights' sum included (it follows the kernel's order, mj_rows_dot). */
#include <math.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/numeric.h"
#include "moejit_reference.h"
#include "ops/permute_combine/permute_combine.h"

/* f32 → element i of a row, round to nearest even (what the kernels' Store<D> does). */
static void store_f32(void *row, int dtype, int64_t i, float v)
{
    switch (dtype) {
    case MOEJIT_DTYPE_BF16: ((uint16_t *)row)[i] = mj_f32_to_bf16(v); break;
    case MOEJIT_DTYPE_F16: ((uint16_t *)row)[i] = mj_f32_to_f16(v); break;
    default: ((float *)row)[i] = v; break;
    }
}

/* One butterfly over 32 lanes: for o = 16, 8, 4, 2, 1 every lane l adds lane l^o's value (the
 * kernel's __shfl_xor_sync loop; a + b == b + a in IEEE arithmetic, so every lane ends with the
 * same bits). Returns lane 0's. */
static float butterfly32(float v[32])
{
    for (int o = 16; o > 0; o >>= 1) {
        float next[32];
        for (int l = 0; l < 32; l++) next[l] = v[l] + v[l ^ o];
        memcpy(v, next, sizeof next);
    }
    return v[0];
}

float mj_rows_dot(const void *a, const void *b, int hidden, int dtype)
{
    const int threads = mj_rows_threads(hidden, dtype), warps = threads / 32;
    const int n = mj_rows_vec_bytes(hidden, dtype) / mj_dtype_bytes(dtype), chunks = mj_rows_chunks(hidden, dtype);
    float warp_sum[32];
    for (int w = 0; w < warps; w++) {
        float lane[32];
        for (int l = 0; l < 32; l++) {
            float acc = 0.0f;
            for (int c = w * 32 + l; c < chunks; c += threads)
                for (int e = 0; e < n; e++) {
                    const int64_t j = (int64_t)c * n + e;
                    acc = fmaf(mj_load_as_f32(a, dtype, j), mj_load_as_f32(b, dtype, j), acc);
                }
            lane[l] = acc;
        }
        warp_sum[w] = butterfly32(lane);
    }
    if (warps == 1) return warp_sum[0];
    for (int l = warps; l < 32; l++) warp_sum[l] = 0.0f;
    return butterfly32(warp_sum);
}

moejit_status moejit_permute_backward_reference(const moejit_permute_backward_spec *spec,
                                                const moejit_permute_backward_args *a)
{
    mj_error_clear();
    mj_permute_backward_shape s;
    moejit_status st = mj_permute_backward_normalize(spec, &s);
    int nothing;
    if (st == MOEJIT_OK) st = mj_permute_backward_check_args(&s, a, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    const size_t row_bytes = (size_t)s.hidden * (size_t)mj_dtype_bytes(s.dtype);
    for (int64_t t = 0; t < a->num_tokens; t++) {
        const int32_t *slots = a->slot_of + t * a->topk;
        char *dst = (char *)a->grad_x + (size_t)t * row_bytes;
        for (int64_t j = 0; j < s.hidden; j++) {
            float acc = 0.0f;
            for (int k = 0; k < a->topk; k++) {
                if (slots[k] < 0 || slots[k] >= a->num_rows) continue; /* dropped */
                float scale = 1.0f;
                if (s.has_scale) {
                    const int32_t e = a->ids[t * a->topk + k];
                    if (e < 0 || e >= a->num_experts) continue; /* the forward's row was zero */
                    scale = a->scale[e];
                }
                const char *g = (const char *)a->grad_out + (size_t)slots[k] * row_bytes;
                acc = fmaf(mj_load_as_f32(g, s.dtype, j), scale, acc);
            }
            store_f32(dst, s.dtype, j, acc);
        }
    }
    return MOEJIT_OK;
}

moejit_status moejit_combine_backward_reference(const moejit_combine_backward_spec *spec,
                                                const moejit_combine_backward_args *a)
{
    mj_error_clear();
    mj_combine_backward_shape s;
    moejit_status st = mj_combine_backward_normalize(spec, &s);
    int nothing;
    if (st == MOEJIT_OK) st = mj_combine_backward_check_args(&s, a, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    const size_t row_bytes = (size_t)s.hidden * (size_t)mj_dtype_bytes(s.dtype);
    const int64_t flat_end = a->num_tokens * a->topk;
    if (a->grad_y)
        for (int64_t r = 0; r < a->num_rows; r++) {
            char *dst = (char *)a->grad_y + (size_t)r * row_bytes;
            const int32_t i = a->sorted_ids[r];
            if (i < 0 || i >= flat_end || a->slot_of[i] != r) { /* padding, or a row no slot reads */
                memset(dst, 0, row_bytes);
                continue;
            }
            const char *g = (const char *)a->grad_out + (size_t)(i / a->topk) * row_bytes;
            const float w = a->weights[i];
            for (int64_t j = 0; j < s.hidden; j++) {
                const float product = w * mj_load_as_f32(g, s.dtype, j); /* rounded to f32, then to dtype */
                store_f32(dst, s.dtype, j, product);
            }
        }
    if (a->grad_weights)
        for (int64_t i = 0; i < flat_end; i++) {
            const int32_t slot = a->slot_of[i];
            a->grad_weights[i] =
                slot < 0 || slot >= a->num_rows
                    ? 0.0f
                    : mj_rows_dot((const char *)a->grad_out + (size_t)(i / a->topk) * row_bytes,
                                  (const char *)a->y + (size_t)slot * row_bytes, s.hidden, s.dtype);
        }
    return MOEJIT_OK;
}
