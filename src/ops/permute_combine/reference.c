/* C references of permute and combine: the definition the GPU kernels match bit for bit. */
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

moejit_status moejit_permute_reference(const moejit_permute_spec *spec, const moejit_permute_args *a)
{
    mj_error_clear();
    mj_permute_shape s;
    moejit_status st = mj_permute_normalize(spec, &s);
    int nothing;
    if (st == MOEJIT_OK) st = mj_permute_check_args(&s, a, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    const size_t row_bytes = (size_t)s.hidden * (size_t)mj_dtype_bytes(s.dtype);
    const int64_t flat_end = a->num_tokens * a->topk;
    for (int64_t r = 0; r < a->num_rows; r++) {
        char *dst = (char *)a->out + (size_t)r * row_bytes;
        const int32_t flat = a->sorted_ids[r];
        int pad = flat < 0 || flat >= flat_end;
        float scale = 1.0f;
        if (s.has_scale && !pad) {
            const int32_t e = a->ids[flat];
            if (e < 0 || e >= a->num_experts) pad = 1;
            else scale = a->scale[e];
        }
        if (pad) {
            memset(dst, 0, row_bytes);
            continue;
        }
        const char *src = (const char *)a->x + (size_t)(flat / a->topk) * row_bytes;
        if (!s.has_scale) {
            memcpy(dst, src, row_bytes); /* a copy, bit for bit */
            continue;
        }
        for (int64_t j = 0; j < s.hidden; j++) store_f32(dst, s.dtype, j, mj_load_as_f32(src, s.dtype, j) * scale);
    }
    return MOEJIT_OK;
}

moejit_status moejit_combine_reference(const moejit_combine_spec *spec, const moejit_combine_args *a)
{
    mj_error_clear();
    mj_combine_shape s;
    moejit_status st = mj_combine_normalize(spec, &s);
    int nothing;
    if (st == MOEJIT_OK) st = mj_combine_check_args(&s, a, &nothing);
    if (st != MOEJIT_OK || nothing) return st;
    const size_t row_bytes = (size_t)s.hidden * (size_t)mj_dtype_bytes(s.dtype);
    for (int64_t t = 0; t < a->num_tokens; t++) {
        const int32_t *slots = a->slot_of + t * a->topk;
        const float *w = a->weights + t * a->topk;
        char *dst = (char *)a->out + (size_t)t * row_bytes;
        for (int64_t j = 0; j < s.hidden; j++) {
            float acc = 0.0f;
            for (int k = 0; k < a->topk; k++) {
                if (slots[k] < 0 || slots[k] >= a->num_rows) continue;
                const char *y = (const char *)a->y + (size_t)slots[k] * row_bytes;
                acc = fmaf(w[k], mj_load_as_f32(y, s.dtype, j), acc); /* one rounding, as the GPU's FMA */
            }
            store_f32(dst, s.dtype, j, acc);
        }
    }
    return MOEJIT_OK;
}
