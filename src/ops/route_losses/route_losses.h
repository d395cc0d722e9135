/* route_losses — the auxiliary losses from route's statistics (moejit.h Operation 1c,
 * docs/DESIGN.md §2.1c). Plain C: the reference includes it without any CUDA header.
 *   spec.c       validate and normalise a spec, name and describe a shape, check arguments
 *   codegen.c    the launch plan, the Cfg and the entry point (kernel_templates/route_losses.cuh)
 *   launch.c     moejit_route_losses: checks, one launch of one block
 *   reference.c  moejit_route_losses_reference: the definition, in double */
#ifndef MOEJIT_OPS_ROUTE_LOSSES_H
#define MOEJIT_OPS_ROUTE_LOSSES_H

#include <stddef.h>
#include <stdint.h>

#include "common/params.h"
#include "moejit.h"

/* Padding-free, compared with memcmp. */
typedef struct mj_route_losses_shape {
    int32_t experts;          /* E */
    int32_t topk;             /* K */
    int32_t aux_stats;        /* MOEJIT_AUX_* flags, not 0 */
    int32_t seq_offset_dtype; /* moejit_index_dtype, 0 without MOEJIT_AUX_SEQ_LOAD_BALANCE */
} mj_route_losses_shape;

moejit_status mj_route_losses_normalize(const moejit_route_losses_spec *spec, mj_route_losses_shape *out);
int mj_route_losses_module_name(const mj_route_losses_shape *s, char *buf, size_t cap);
int mj_route_losses_describe(const mj_route_losses_shape *s, char *buf, size_t cap);

/* The kernel's parameters (mj::RouteLossesParams in route_losses.cuh is emitted from this). */
#define MJ_ROUTE_LOSSES_PARAMS(X, S)                                                                       \
    X(S, const void *, prob_sums)                                                                         \
    X(S, const int32_t *, counts)                                                                         \
    X(S, const float *, lse)                                                                              \
    X(S, const void *, seq_offsets)                                                                       \
    X(S, float *, losses)                                                                                 \
    X(S, int64_t, num_tokens)                                                                             \
    X(S, int64_t, num_seqs)
typedef struct mj_route_losses_params {
    MJ_ROUTE_LOSSES_PARAMS(MJ_PARAM_DECL, _)
} mj_route_losses_params;

moejit_status mj_route_losses_check_args(const mj_route_losses_shape *s, const moejit_route_losses_args *a,
                                         mj_route_losses_params *p);

enum { MJ_ROUTE_LOSSES_THREADS = 512 };

struct mj_op;
extern const struct mj_op mj_op_route_losses;

#endif
