/* route as a kernel family: its normalised shape, validation, naming, launch plan and codegen. */
#ifndef MOEJIT_OP_ROUTE_H
#define MOEJIT_OP_ROUTE_H

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
} mj_route_shape;

/* Validate a route spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_route_normalize(const moejit_route_spec *spec, mj_route_shape *out);

/* Route kernels run one warp per token, this many warps a block. */
enum { MJ_ROUTE_WARPS_PER_BLOCK = 4 };

struct mj_strbuf;
/* `struct MoejitRouteCfg { … };` for a shape (route.cuh's Cfg contract); route_align reuses it. */
void mj_route_emit_cfg(struct mj_strbuf *sb, const mj_route_shape *r);
/* The route kernel's extern "C" entry `name` on MoejitRouteCfg. */
void mj_route_emit_entry(struct mj_strbuf *sb, const char *name);

struct mj_op;
extern const struct mj_op mj_op_route;

#endif
