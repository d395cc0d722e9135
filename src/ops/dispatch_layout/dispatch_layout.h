/* dispatch_layout — what an all-to-all needs to know, from routing ids (moejit.h Operation 5,
 * docs/DESIGN.md §2.6): DeepEP's get_dispatch_layout, deterministic, in one launch.
 *
 * The op's one header: its normalised shape, the geometry of its kernels, its parameters (one
 * table for C and CUDA), the batch layout and the argument checks shared by the launch and the
 * reference. Plain C (no CUDA header).
 *   spec.c       validate and normalise a spec, names, the batch layout, argument checks
 *   codegen.c    the launch plan, the Cfg and entry points: where a shape becomes CUDA source
 *   launch.c     moejit_dispatch_layout: one launch of the small or the grid entry
 *   reference.c  moejit_dispatch_layout_reference: the definition, token by token */
#ifndef MOEJIT_OPS_DISPATCH_LAYOUT_H
#define MOEJIT_OPS_DISPATCH_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/params.h"
#include "moejit.h"

/* dispatch_layout spec after normalisation: padding-free, compared with memcmp. */
typedef struct mj_dispatch_layout_shape {
    int32_t experts;        /* E */
    int32_t ranks;          /* R, divides E */
    int32_t topk;           /* K */
    int32_t id_dtype;       /* moejit_index_dtype */
    int32_t ranks_per_node; /* resolved (never 0), divides R */
} mj_dispatch_layout_shape;

#define MJ_DISPATCH_LAYOUT_MAX_EXPERTS (MOEJIT_MAX_EXPERTS + MOEJIT_MAX_TOPK)
#define MJ_DISPATCH_LAYOUT_MAX_TOPK (2 * MOEJIT_MAX_TOPK)

/* Validate a dispatch_layout spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_dispatch_layout_normalize(const moejit_dispatch_layout_spec *spec, mj_dispatch_layout_shape *out);

/* "moejit_dispatch_layout_e256_r8_k8_i64" (with "_rpn4" when ranks_per_node is not the default). */
int mj_dispatch_layout_module_name(const mj_dispatch_layout_shape *s, char *buf, size_t cap);

/* The geometry of the kernels (the constants of dispatch_layout.cuh's Cfg contract). */
enum {
    MJ_DL_SMALL_TOKENS = 128,  /* batches up to this many tokens take the one-block entry */
    MJ_DL_SMALL_THREADS = 128, /* its block: a thread a token */
    MJ_DL_THREADS = 1024,      /* block of the grid entry; also the tokens of a row block */
    MJ_DL_EXPERT_SLICE = 32,   /* experts a counting block of the grid owns */
    MJ_DL_GROUP_SLICE = 16,    /* ranks (or nodes) a counting block of the grid owns, at most */
    MJ_DL_ROW_SLICE = 64,      /* ranks of is_token_in_rank a row block writes (a 64-bit mask) */
};

/* The module's entries. */
enum { MJ_DL_SMALL = 0, MJ_DL_GRID = 1, MJ_DL_ENTRIES = 2 };

/* Nodes: R / ranks_per_node. Groups a counting block owns: min(G, MJ_DL_GROUP_SLICE). */
static inline int mj_dl_nodes(const mj_dispatch_layout_shape *s) { return s->ranks / s->ranks_per_node; }
static inline int mj_dl_group_slice(int groups) { return groups < MJ_DL_GROUP_SLICE ? groups : MJ_DL_GROUP_SLICE; }

/* Dynamic shared memory of the small entry: its E + R + N counters. */
static inline int mj_dl_small_smem_bytes(const mj_dispatch_layout_shape *s)
{
    return 4 * (s->experts + s->ranks + mj_dl_nodes(s));
}

/* The kernels' parameters (mj::DispatchLayoutParams in dispatch_layout.cuh is emitted from this
 * table). The grid entry's blocks are, in order: expert_blocks counting experts, rank_blocks
 * counting ranks, node_blocks counting nodes, then row_tiles × ceil(R / 64) writing rows. */
#define MJ_DISPATCH_LAYOUT_PARAMS(X, S)                                                                    \
    X(S, const void *, ids)                                                                               \
    X(S, int64_t, num_tokens)                                                                             \
    X(S, int32_t *, tokens_per_rank)                                                                      \
    X(S, int32_t *, tokens_per_node)                                                                      \
    X(S, int32_t *, tokens_per_expert)                                                                    \
    X(S, uint8_t *, is_token_in_rank)                                                                     \
    X(S, int32_t, expert_blocks)                                                                          \
    X(S, int32_t, rank_blocks)                                                                            \
    X(S, int32_t, node_blocks)                                                                            \
    X(S, int32_t, row_tiles)
typedef struct mj_dispatch_layout_params {
    MJ_DISPATCH_LAYOUT_PARAMS(MJ_PARAM_DECL, _)
} mj_dispatch_layout_params;

/* How a batch runs, decided from sizes and the outputs wanted alone (never from the ids), so that
 * launches are capturable in CUDA graphs. */
typedef struct mj_dispatch_layout_layout {
    int small;      /* 1: one block of the small entry */
    int64_t blocks; /* grid of the launch; 0: nothing to launch (no output wanted) */
} mj_dispatch_layout_layout;

/* Every check of a moejit_dispatch_layout call (the launch's and the reference's): the spec
 * normalised into *shape, the arguments, the layout of the batch and the kernel parameters. */
moejit_status mj_dispatch_layout_check_call(const moejit_dispatch_layout_spec *spec,
                                            const moejit_dispatch_layout_args *args, mj_dispatch_layout_shape *shape,
                                            mj_dispatch_layout_layout *l, mj_dispatch_layout_params *p);

struct mj_op;
extern const struct mj_op mj_op_dispatch_layout;

#endif
