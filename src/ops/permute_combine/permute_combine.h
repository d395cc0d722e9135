/* permute and combine — moving token rows [T, H] into expert order and back (moejit.h,
 * docs/DESIGN.md §2.4): the two ends of the expert computation, two ops sharing their validation, vector plan
 * and template (kernel_templates/permute_combine.cuh).
 *
 * The ops' one header: normalised shapes, parameters (one table each for C and CUDA) and the
 * argument checks shared by the launches and the references. Plain C.
 *   spec.c       validate and normalise specs, the vector plan, argument checks
 *   codegen.c    the launch plans, Cfgs and entry points: where a shape becomes CUDA source
 *   launch.c     moejit_permute and moejit_combine
 *   reference.c  their C references, bit-identical to the kernels */
#ifndef MOEJIT_OPS_PERMUTE_COMBINE_H
#define MOEJIT_OPS_PERMUTE_COMBINE_H

#include <stdint.h>

#include "common/params.h"
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

/* The kernels' parameters (mj::PermuteParams / mj::CombineParams are emitted from these tables). */
#define MJ_PERMUTE_PARAMS(X, S)                                                                            \
    X(S, const void *, x)                                                                                 \
    X(S, const int32_t *, sorted_ids)                                                                     \
    X(S, const int32_t *, ids)                                                                            \
    X(S, const float *, scale)                                                                            \
    X(S, void *, out)                                                                                     \
    X(S, int64_t, num_tokens)                                                                             \
    X(S, int64_t, num_rows)                                                                               \
    X(S, int32_t, topk)                                                                                   \
    X(S, int32_t, num_experts)
typedef struct mj_permute_params {
    MJ_PERMUTE_PARAMS(MJ_PARAM_DECL, _)
} mj_permute_params;

#define MJ_COMBINE_PARAMS(X, S)                                                                            \
    X(S, const void *, y)                                                                                 \
    X(S, const int32_t *, slot_of)                                                                        \
    X(S, const float *, weights)                                                                          \
    X(S, void *, out)                                                                                     \
    X(S, int64_t, num_tokens)                                                                             \
    X(S, int64_t, num_rows)                                                                               \
    X(S, int32_t, topk)                                                                                   \
    X(S, int32_t, reserved)
typedef struct mj_combine_params {
    MJ_COMBINE_PARAMS(MJ_PARAM_DECL, _)
} mj_combine_params;

/* Argument checks shared by the launches and the references (pointers: not NULL where needed,
 * aligned to their element). *nothing = 1 when there is no work (R == 0 / T == 0). */
moejit_status mj_permute_check_args(const mj_permute_shape *s, const moejit_permute_args *a, int *nothing);
moejit_status mj_combine_check_args(const mj_combine_shape *s, const moejit_combine_args *a, int *nothing);

struct mj_op;
extern const struct mj_op mj_op_permute;
extern const struct mj_op mj_op_combine;

#endif
