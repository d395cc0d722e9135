/* Spec validation and normalisation: the one place that decides what a valid shape is.
 *
 * A normalised spec has every default resolved and every irrelevant field zeroed, so two specs
 * that describe the same kernel pack to the same bytes (the registry's lookup key). */
#ifndef MOEJIT_SPEC_H
#define MOEJIT_SPEC_H

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

/* The packed identity of a kernel module: operation + normalised spec. Zero-filled before use so
 * that memcmp/hash see no stray padding bytes. */
typedef struct mj_kernel_id {
    int32_t op;
    int32_t reserved;
    union {
        mj_route_shape route;
        uint8_t bytes[56];
    } u;
} mj_kernel_id;

/* Validate a route spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_route_normalize(const moejit_route_spec *spec, mj_route_shape *out);

/* Validate a descriptor and build its packed id. */
moejit_status mj_kernel_id_from_desc(const moejit_kernel_desc *desc, mj_kernel_id *out);

/* Entry point name of a kernel ("moejit_route_sigmoid_e384_k8_bf16"). Returns the length. */
int mj_kernel_entry_name(const mj_kernel_id *id, char *buf, size_t cap);

const char *mj_dtype_name(int dtype);        /* "f32", "bf16", "f16", or NULL */
const char *mj_score_name(int score);        /* "softmax", "sigmoid", "sqrt_softplus", or NULL */
const char *mj_group_score_name(int gscore); /* "max", "top2_sum", or NULL */
int mj_dtype_bytes(int dtype);

/* Parse names (as the CLI and manifests spell them); return -1 if unknown. */
int mj_dtype_parse(const char *s);
int mj_score_parse(const char *s);
int mj_group_score_parse(const char *s);



/* Human-readable shape ("E=384 K=8 score=sigmoid dtype=bf16 bias renorm"), for logs, cache
 * metadata and the CLI. Returns the length. */
int mj_kernel_describe(const mj_kernel_id *id, char *buf, size_t cap);

/* Operation name ("route"). */
const char *mj_op_name(int op);
#endif
