/* route_backward — the gradient of route's weights w.r.t. the logits (moejit.h Operation 1b,
 * docs/DESIGN.md §2.1b). Built on route's spec and device code (an op allowed to include route).
 * Plain C: the reference includes it without any CUDA header.
 *   spec.c       validate and normalise a spec (route's checks first), name and describe a shape,
 *                check arguments
 *   codegen.c    the launch plan, the Cfg and the entry point: where a shape becomes CUDA source
 *                (kernel_templates/route_backward.cuh, on route.cuh's helpers)
 *   launch.c     moejit_route_backward: checks, one launch
 *   reference.c  moejit_route_backward_reference: the definition, in double */
#ifndef MOEJIT_OPS_ROUTE_BACKWARD_H
#define MOEJIT_OPS_ROUTE_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

#include "common/params.h"
#include "moejit.h"
#include "ops/route/route.h"

/* What the gradient depends on, normalised: the selection's options (groups, bias) and the
 * serving options other than the ids' type are gone, score_after_topk is kept for softmax only
 * (an elementwise score weighs a chosen expert by score(logit) either way). Padding-free. */
typedef struct mj_route_backward_shape {
    int32_t experts;          /* E */
    int32_t topk;             /* K */
    int32_t score;            /* moejit_score */
    int32_t dtype;            /* moejit_dtype of the logits */
    float softcap;            /* 0 = off */
    int32_t score_after_topk; /* 0/1, softmax only */
    int32_t renormalize;      /* 0/1 */
    int32_t scale_output;     /* 0/1, 0 when the factor is 1 */
    float scaling_factor;     /* 1.0 unless it matters (scale_output or shared slots) */
    int32_t shared_slots;     /* S */
    int32_t id_dtype;         /* moejit_index_dtype of the ids read (route's, or its logical ids') */
    int32_t aux_stats;        /* MOEJIT_AUX_* flags: the losses whose gradient may be added */
    int32_t seq_offset_dtype; /* moejit_index_dtype of seq_offsets, 0 without the per-sequence loss */
} mj_route_backward_shape;

/* Validate a spec (route's checks, then the backward's) and write its normalised shape. */
moejit_status mj_route_backward_normalize(const moejit_route_backward_spec *spec, mj_route_backward_shape *out);

/* The route shape whose weights this is the gradient of: no groups, no bias, no serving options but
 * the ids' type. Route's names describe it, and its module brings route.cuh's helpers. */
mj_route_shape mj_route_backward_forward_shape(const mj_route_backward_shape *s);

/* Module name ("moejit_route_backward_softmax_e128_k8_f32") and human-readable shape. Return the length. */
int mj_route_backward_module_name(const mj_route_backward_shape *s, char *buf, size_t cap);
int mj_route_backward_describe(const mj_route_backward_shape *s, char *buf, size_t cap);

/* The kernel's parameters (mj::RouteBackwardParams in route_backward.cuh is emitted from this). */
#define MJ_ROUTE_BACKWARD_PARAMS(X, S)                                                                     \
    X(S, const void *, logits)                                                                            \
    X(S, const void *, ids)                                                                               \
    X(S, const float *, grad_weights)                                                                     \
    X(S, float *, grad_logits)                                                                            \
    X(S, int64_t, num_tokens)                                                                             \
    X(S, int64_t, row_stride)                                                                             \
    X(S, const float *, grad_losses)                                                                      \
    X(S, const int32_t *, aux_counts)                                                                     \
    X(S, const void *, seq_offsets)                                                                       \
    X(S, int64_t, num_seqs)
typedef struct mj_route_backward_params {
    MJ_ROUTE_BACKWARD_PARAMS(MJ_PARAM_DECL, _)
} mj_route_backward_params;

/* Check the arguments against a shape and fill the kernel parameters (pointers: not NULL,
 * aligned; sizes: no overflow). */
moejit_status mj_route_backward_check_args(const mj_route_backward_shape *s, const moejit_route_backward_args *a,
                                           mj_route_backward_params *p);

struct mj_op;
extern const struct mj_op mj_op_route_backward;

#endif
