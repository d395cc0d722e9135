/* route — gating and top-k selection (moejit.h Operation 1, docs/DESIGN.md §2.1).
 *
 * The op's one header: its normalised shape, its kernel parameters (one table for C and CUDA),
 * the argument checks shared by the launch and the reference, and what route_align reuses.
 * Plain C: the reference includes it without any CUDA header.
 *   spec.c       validate and normalise a spec, name and describe a shape
 *   codegen.c    the launch plan, the Cfg and entry points: where a shape becomes CUDA source
 *   launch.c     moejit_route: checks, the per-thread memo, one launch
 *   reference.c  moejit_route_reference: the definition, in double
 *   presets.c    the model presets */
#ifndef MOEJIT_OPS_ROUTE_H
#define MOEJIT_OPS_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "common/params.h"
#include "moejit.h"

/* Route spec after normalisation: fixed-size fields only, padding-free, compared with memcmp. */
typedef struct mj_route_shape {
    int32_t experts;          /* E */
    int32_t topk;             /* K */
    int32_t score;            /* moejit_score */
    int32_t dtype;            /* moejit_dtype */
    int32_t groups;           /* G >= 1 */
    int32_t topk_groups;      /* TG, 1..G (== G when ungrouped) */
    int32_t group_score;      /* 0 when G == 1 */
    int32_t has_bias;         /* 0/1 */
    float softcap;            /* 0 = off */
    int32_t score_after_topk; /* 0/1 */
    int32_t renormalize;      /* 0/1 */
    int32_t scale_output;     /* 0/1, 0 when the factor is 1 */
    float scaling_factor;     /* 1.0 unless it matters (scale_output or shared slots) */
    int32_t shared_slots;     /* S */
    /* serving options (moejit.h route steps 8-12) */
    int32_t padded;           /* 0/1: a device count bounds the rows */
    int32_t id_dtype;         /* moejit_index_dtype of ids */
    int32_t max_replicas;     /* R, 0 = no placement */
    int32_t physical_experts; /* P: ids are in [0, P); E without placement */
    int32_t load_counter;     /* moejit_load_counter */
    int32_t replay;           /* moejit_replay */
    int32_t logical_id_dtype; /* moejit_index_dtype of logical_ids; 0 without replay */
    int32_t aux_stats;        /* MOEJIT_AUX_* flags (step 13) */
    int32_t seq_offset_dtype; /* moejit_index_dtype of seq_offsets; 0 without MOEJIT_AUX_SEQ_LOAD_BALANCE */
} mj_route_shape;

/* Validate a route spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_route_normalize(const moejit_route_spec *spec, mj_route_shape *out);

/* E in [1, MOEJIT_MAX_EXPERTS] and K in [1, min(E, MOEJIT_MAX_TOPK)], errors prefixed by `what`
 * ("route spec", …): the sizes every route-shaped spec shares. */
moejit_status mj_route_check_sizes(const char *what, int e, int k);

/* Module name ("moejit_route_sigmoid_e384_k8_bf16") and human-readable shape ("E=384 K=8
 * score=sigmoid dtype=bf16") of a shape; both return the length (route_align builds on them). */
int mj_route_module_name(const mj_route_shape *r, char *buf, size_t cap);
#define MJ_ROUTE_NAME_CAP 256 /* holds any route module name in full (they are shortened later) */
int mj_route_describe(const mj_route_shape *r, char *buf, size_t cap);

/* "softmax", "sigmoid", "sqrt_softplus" / "max", "top2_sum", or NULL; parsers return -1 if unknown. */
const char *mj_score_name(int score);
const char *mj_group_score_name(int group_score);
int mj_score_parse(const char *s);
int mj_group_score_parse(const char *s);
/* "off", "record", "given" / "none", "int32", "int64" (moejit_replay / moejit_load_counter). */
const char *mj_replay_name(int replay);
const char *mj_load_counter_name(int load_counter);
int mj_replay_parse(const char *s);
int mj_load_counter_parse(const char *s);

/* The kernel's parameters (mj::RouteParams in route.cuh is emitted from this table). */
#define MJ_ROUTE_PARAMS(X, S)                                                                              \
    X(S, const void *, logits)                                                                            \
    X(S, const float *, bias)                                                                             \
    X(S, void *, ids)                                                                                     \
    X(S, float *, weights)                                                                                \
    X(S, int64_t, num_tokens)                                                                             \
    X(S, int64_t, row_stride)                                                                             \
    X(S, const int32_t *, num_valid)                                                                      \
    X(S, const int32_t *, logical_to_physical)                                                            \
    X(S, const int32_t *, replica_count)                                                                  \
    X(S, void *, expert_load)                                                                             \
    X(S, void *, logical_ids)                                                                             \
    X(S, void *, aux_prob_sums)                                                                           \
    X(S, int32_t *, aux_counts)                                                                           \
    X(S, float *, aux_lse)                                                                                \
    X(S, const void *, seq_offsets)                                                                       \
    X(S, int64_t, num_seqs)
typedef struct mj_route_params {
    MJ_ROUTE_PARAMS(MJ_PARAM_DECL, _)
} mj_route_params;

/* Check route arguments against a shape and fill the kernel parameters (pointers: not NULL,
 * aligned; sizes: no overflow). `op` names the caller in messages ("route", "route_align"). */
moejit_status mj_route_check_args(const char *op, const mj_route_shape *r, const moejit_route_args *a,
                                  mj_route_params *p);

/* The most replicas a logical expert may have, and the most physical experts (route step 10). */
enum { MJ_ROUTE_MAX_REPLICAS = 1024, MJ_ROUTE_MAX_PHYSICAL_EXPERTS = 1 << 20 };

/* Experts the ids of a shape address: P + S (P = E without placement). */
static inline int mj_route_id_space(const mj_route_shape *r) { return r->physical_experts + r->shared_slots; }

/* With MOEJIT_AUX_LOAD_BALANCE or _SEQ_LOAD_BALANCE, route's grid is capped at this many blocks,
 * each segment routing a contiguous run of tokens and adding its statistics once per sequence it
 * met (route.cuh, AuxState). A constant, not the device's SM count: the partition, hence the f32
 * partial sums, depend on T alone. */
enum { MJ_ROUTE_AUX_MAX_BLOCKS = 1024 };
/* route's entry points. Every shape has MJ_ROUTE_ENTRY_MAIN, in blocks of mj_route_warps_per_block
 * warps. Where that is more than MJ_ROUTE_WARPS_PER_BLOCK (statistics), a second one,
 * MJ_ROUTE_ENTRY_SMALL, runs blocks of MJ_ROUTE_WARPS_PER_BLOCK warps for batches of at most
 * MJ_ROUTE_AUX_SMALL_TOKENS: blocks of 16 warps cost the statistics +0.9 to +3.6 µs over blocks of
 * 4 at T = 1 and 129, and save 0.7 to 1.2 µs at T = 1024 (H100, route_probe --losses, BENCHMARKS.md).
 * The entry depends on T alone, so the statistics' bits do too. */
enum { MJ_ROUTE_ENTRY_MAIN = 0, MJ_ROUTE_ENTRY_SMALL = 1, MJ_ROUTE_AUX_SMALL_TOKENS = 512 };
/* The entry of a route launch of T tokens (returned) and its grid (*blocks). */
int mj_route_launch_for(const mj_route_shape *r, int64_t tokens, int64_t *blocks);
/* "lb", "seq", "z" joined by ','; parse returns the flags or -1. */
int mj_aux_stats_format(uint32_t flags, char *buf, size_t cap);
int mj_aux_stats_parse(const char *s);
/* Check an aux statistics struct (route's and route_backward's, `what` names the op's args): for
 * the given flags and needs (bit 0 prob_sums, 1 counts, 2 lse, 3 seq_offsets). */
moejit_status mj_aux_check(const char *op, const moejit_aux_stats *aux, uint32_t flags, int needs, int offset_dtype,
                           int experts);

/* The sequence of token t under offsets [S+1] of an index dtype (off[s] <= t < off[s+1], the
 * last such s), -1 when none (the reference's rule, the kernels' too). */
int64_t mj_aux_sequence_of(const void *offsets, int dtype, int64_t num_seqs, int64_t t);

/* Route kernels run one warp per token (or a segment of one), this many warps a block. */
enum { MJ_ROUTE_WARPS_PER_BLOCK = 4 };

/* The warps of a route block for shape r: MJ_ROUTE_WARPS_PER_BLOCK, or 16 with load-balancing
 * statistics where their shared memory allows. Why: the statistics' grid is capped
 * (MJ_ROUTE_AUX_MAX_BLOCKS: each block adds E sums to the device) and with blocks of 4 warps the
 * cap left half the warps a plain route keeps in flight at T = 16384 (ncu: 37% occupancy). */
int mj_route_warps_per_block(const mj_route_shape *r);

/* Lanes routing one token: a whole warp from 32 experts up, else the next power of two, so that a
 * warp takes several small tokens at once (the kernels read it as Cfg::kLanesPerToken); and the
 * tokens a block of `warps` warps takes (one above 1024 experts). Shared by every kernel laid out
 * like route's (route, route_align's fallback, route_backward). */
int mj_route_lanes_per_token(int experts);
int mj_route_tokens_per_block(int experts, int warps);

struct mj_strbuf;
/* What route_align emits of route: the parameter struct, the template, the Cfg, an entry. */
void mj_route_emit_module(struct mj_strbuf *sb, const mj_route_shape *r);
void mj_route_emit_entry(struct mj_strbuf *sb, const mj_route_shape *r, const char *name);

/* The smallest relative gap, in one row of E logits (already f32), between a choice the routing
 * makes and the best choice it does not make — at the group boundary (TG-th vs next group score)
 * and at the expert boundary (K-th vs next selection value among kept experts). Tests draw inputs
 * with a margin well above f32 rounding, so that kernel and reference must agree exactly. */
double mj_route_row_margin(const mj_route_shape *r, const float *logits, const float *bias);

struct mj_op;
extern const struct mj_op mj_op_route;

#endif
