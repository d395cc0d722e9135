/* permute and combine — moving token rows [T, H] into expert order and back (moejit.h,
 * docs/DESIGN.md §2.4) — and their backward: the two ends of the expert computation, four ops
 * sharing their validation, vector plan and templates (kernel_templates/permute_combine.cuh, and
 * permute_combine_backward.cuh after it).
 *
 * The ops' one header: normalised shapes, parameters (one table each for C and CUDA) and the
 * argument checks shared by the launches and the references. Plain C.
 *   spec.c                validate and normalise specs, the vector plan, argument checks
 *   codegen.c             the forward's launch plans, Cfgs and entry points: where a shape becomes
 *                         CUDA source
 *   codegen_backward.c    the same for the backward
 *   launch.c              moejit_permute, moejit_combine and their backward
 *   reference.c           the forward's C references, bit-identical to the kernels
 *   reference_backward.c  the backward's, bit-identical too (grad_weights' summation order) */
#ifndef MOEJIT_OPS_PERMUTE_COMBINE_H
#define MOEJIT_OPS_PERMUTE_COMBINE_H

#include <stddef.h>
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

/* The backward's shapes are the forward's (the same fields, normalised the same way). */
typedef mj_permute_shape mj_permute_backward_shape;
typedef mj_combine_shape mj_combine_backward_shape;

/* Validate a spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_permute_normalize(const moejit_permute_spec *spec, mj_permute_shape *out);
moejit_status mj_combine_normalize(const moejit_combine_spec *spec, mj_combine_shape *out);
moejit_status mj_permute_backward_normalize(const moejit_permute_backward_spec *spec, mj_permute_backward_shape *out);
moejit_status mj_combine_backward_normalize(const moejit_combine_backward_spec *spec, mj_combine_backward_shape *out);

/* Bytes per vector in a row of H elements of dtype: the widest of 16, 8, 4 dividing the row,
 * else one element; the row's chunks (vectors of that width); threads per block for such a row;
 * and the slices of a block's width that cover the row (the backward ops' latency entry). */
int mj_rows_vec_bytes(int hidden, int dtype);
int mj_rows_chunks(int hidden, int dtype);
int mj_rows_threads(int hidden, int dtype);
int mj_rows_slices(int hidden, int dtype);

/* Shared by the four row ops' codegen: "moejit_<op>_h<H>_<dtype>[_scale]", "H=… dtype=…[ scale]"
 * (both return the length), and the launch plan of one block per row or token. */
struct mj_kernel_plan;
int mj_rows_module_name(const char *op, int hidden, int dtype, int has_scale, char *buf, size_t cap);
int mj_rows_describe(int hidden, int dtype, int has_scale, char *buf, size_t cap);
void mj_rows_plan(int hidden, int dtype, struct mj_kernel_plan *plan);

/* combine backward's grad_weights: the dot product of two rows of H elements of dtype, summed in
 * the kernel's order (DESIGN.md §2.4): thread j of P = mj_rows_threads() chains fused
 * multiply-adds, from +0, over chunks j, j + P, j + 2P… of N = mj_rows_vec_bytes() / element size
 * elements (each in element order); then each warp's 32 partials are summed by a butterfly
 * (offsets 16, 8, 4, 2, 1; lane l adds lane l^o's value), and with more than one warp the warps'
 * sums, padded with +0 to 32, by a second butterfly. */
float mj_rows_dot(const void *a, const void *b, int hidden, int dtype);

/* The backward ops' entry points: a token a block (throughput), or for small batches a slice of a
 * row (permute) or a (token, slot) pair (combine) a block, with a thread's loads in flight together
 * (latency). Both sum in the same order. */
enum { MJ_ROWS_BACKWARD_THROUGHPUT = 0, MJ_ROWS_BACKWARD_LATENCY = 1, MJ_ROWS_BACKWARD_ENTRIES = 2 };

/* Up to this many (token, slot) pairs, T·K, the backward ops launch their latency entry. */
#define MJ_ROWS_BACKWARD_LATENCY_SLOTS 4096

/* Rows of grad_y one block of combine backward's zeroing part checks (a warp's ballot). */
#define MJ_COMBINE_BACKWARD_ZERO_ROWS 32

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

#define MJ_PERMUTE_BACKWARD_PARAMS(X, S)                                                                   \
    X(S, const void *, grad_out)                                                                          \
    X(S, const int32_t *, slot_of)                                                                        \
    X(S, const int32_t *, ids)                                                                            \
    X(S, const float *, scale)                                                                            \
    X(S, void *, grad_x)                                                                                  \
    X(S, int64_t, num_tokens)                                                                             \
    X(S, int64_t, num_rows)                                                                               \
    X(S, int32_t, topk)                                                                                   \
    X(S, int32_t, num_experts)
typedef struct mj_permute_backward_params {
    MJ_PERMUTE_BACKWARD_PARAMS(MJ_PARAM_DECL, _)
} mj_permute_backward_params;

/* grad_y / grad_weights NULL: not wanted (uniform branches in the kernel). */
#define MJ_COMBINE_BACKWARD_PARAMS(X, S)                                                                   \
    X(S, const void *, grad_out)                                                                          \
    X(S, const void *, y)                                                                                 \
    X(S, const int32_t *, slot_of)                                                                        \
    X(S, const float *, weights)                                                                          \
    X(S, const int32_t *, sorted_ids)                                                                     \
    X(S, void *, grad_y)                                                                                  \
    X(S, float *, grad_weights)                                                                           \
    X(S, int64_t, num_tokens)                                                                             \
    X(S, int64_t, num_rows)                                                                               \
    X(S, int32_t, topk)                                                                                   \
    X(S, int32_t, reserved)
typedef struct mj_combine_backward_params {
    MJ_COMBINE_BACKWARD_PARAMS(MJ_PARAM_DECL, _)
} mj_combine_backward_params;

/* Argument checks shared by the launches and the references (pointers: not NULL where needed,
 * aligned to their element). *nothing = 1 when there is no work (R == 0 / T == 0; for combine
 * backward, no output wanted or none with rows to write). */
moejit_status mj_permute_check_args(const mj_permute_shape *s, const moejit_permute_args *a, int *nothing);
moejit_status mj_combine_check_args(const mj_combine_shape *s, const moejit_combine_args *a, int *nothing);
moejit_status mj_permute_backward_check_args(const mj_permute_backward_shape *s, const moejit_permute_backward_args *a,
                                             int *nothing);
moejit_status mj_combine_backward_check_args(const mj_combine_backward_shape *s, const moejit_combine_backward_args *a,
                                             int *nothing);

struct mj_op;
extern const struct mj_op mj_op_permute;
extern const struct mj_op mj_op_combine;
extern const struct mj_op mj_op_permute_backward;
extern const struct mj_op mj_op_combine_backward;

#endif
