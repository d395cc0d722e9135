/* capacity — expert capacity and token dropping (moejit.h Operation 6, docs/DESIGN.md §2.7):
 * Megatron-Core's drop policies, in place on route's ids and weights, deterministic.
 *
 * The op's one header: its normalised shape, the geometry of its kernel, its parameters (one
 * table for C and CUDA), and the argument checks shared by the launch and the reference. Plain C.
 *   spec.c       validate and normalise a spec, names, the capacity, argument checks
 *   codegen.c    the launch plan, the Cfg and the entry point
 *   launch.c     moejit_capacity: one launch of E blocks
 *   reference.c  moejit_capacity_reference: the definition, expert by expert */
#ifndef MOEJIT_OPS_CAPACITY_H
#define MOEJIT_OPS_CAPACITY_H

#include <stddef.h>
#include <stdint.h>

#include "common/params.h"
#include "moejit.h"

/* capacity spec after normalisation: padding-free, compared with memcmp. */
typedef struct mj_capacity_shape {
    int32_t experts;  /* E */
    int32_t topk;     /* K */
    int32_t shared;   /* S */
    int32_t id_dtype; /* moejit_index_dtype */
    int32_t policy;   /* moejit_drop_policy */
} mj_capacity_shape;

/* Validate a capacity spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_capacity_normalize(const moejit_capacity_spec *spec, mj_capacity_shape *out);

/* "moejit_capacity_probs_e64_k8_s1_i64" ("_s0" without shared slots). */
int mj_capacity_module_name(const mj_capacity_shape *s, char *buf, size_t cap);

/* The kernel's geometry (capacity.cuh's Cfg contract): a block per expert, each thread taking
 * kItems consecutive routed slots a step. */
enum { MJ_CAP_THREADS = 512, MJ_CAP_ITEMS = 4 };

/* The kernel's parameters (mj::CapacityParams in capacity.cuh is emitted from this table). n is
 * T·K (routed slots), capacity the C applied (clamped to n: a larger one drops nothing). */
#define MJ_CAPACITY_PARAMS(X, S)                                                                           \
    X(S, void *, ids)                                                                                     \
    X(S, float *, weights)                                                                                \
    X(S, int32_t *, tokens_per_expert)                                                                    \
    X(S, int32_t *, kept)                                                                                 \
    X(S, int32_t, n)                                                                                      \
    X(S, int32_t, capacity)
typedef struct mj_capacity_params {
    MJ_CAPACITY_PARAMS(MJ_PARAM_DECL, _)
} mj_capacity_params;

/* Every check of a moejit_capacity call (the launch's and the reference's): the spec normalised
 * into *shape, the arguments, the capacity and the kernel parameters; *launch is 0 when there is
 * nothing to do (no slot and no count wanted). */
moejit_status mj_capacity_check_call(const moejit_capacity_spec *spec, const moejit_capacity_args *args,
                                     mj_capacity_shape *shape, mj_capacity_params *p, int *launch);

/* C from Megatron's formula (see moejit_capacity_of), for `op` in messages. */
moejit_status mj_capacity_from_factor(const char *op, int64_t num_tokens, int32_t topk, int32_t num_experts,
                                      double factor, int32_t min_capacity, int32_t *capacity);

struct mj_op;
extern const struct mj_op mj_op_capacity;

#endif
