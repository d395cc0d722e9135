/* permute and combine as kernel families: moving whole rows of hidden states (H elements of a
 * dtype) into expert order and back. Both share their validation, vector plan and template. */
#ifndef MOEJIT_OP_ROWS_H
#define MOEJIT_OP_ROWS_H

#include "moejit.h"

/* Normalised shapes: padding-free, compared with memcmp. */
typedef struct mj_permute_shape {
    int32_t hidden;    /* H */
    int32_t dtype;     /* moejit_dtype */
    int32_t has_scale; /* 0/1 */
} mj_permute_shape;

typedef struct mj_combine_shape {
    int32_t hidden;
    int32_t dtype;
} mj_combine_shape;

/* Validate a spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_permute_normalize(const moejit_permute_spec *spec, mj_permute_shape *out);
moejit_status mj_combine_normalize(const moejit_combine_spec *spec, mj_combine_shape *out);

/* Bytes per vector in a row of H elements of dtype: the widest of 16, 8, 4 dividing the row,
 * else one element. Threads per block for such a row. */
int mj_rows_vec_bytes(int hidden, int dtype);
int mj_rows_threads(int hidden, int dtype);

/* Argument checks shared by the launches and the references (pointers: not NULL where needed,
 * aligned to their element). *nothing = 1 when there is no work (R == 0 / T == 0). */
moejit_status mj_permute_check_args(const mj_permute_shape *s, const moejit_permute_args *a, int *nothing);
moejit_status mj_combine_check_args(const mj_combine_shape *s, const moejit_combine_args *a, int *nothing);

struct mj_op;
extern const struct mj_op mj_op_permute;
extern const struct mj_op mj_op_combine;

#endif
