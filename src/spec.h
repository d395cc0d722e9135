/* Kernel identity: a descriptor, validated and normalised into a packed id.
 *
 * A normalised spec has every default resolved and every irrelevant field zeroed, so two specs
 * that describe the same kernel pack to the same bytes — the in-process registry's lookup key.
 * Each op validates its own spec (op_*.c); this file dispatches and names the shared enums. */
#ifndef MOEJIT_SPEC_H
#define MOEJIT_SPEC_H

#include "error.h"
#include "moejit.h"
#include "op_align.h"
#include "op_mx_scales.h"
#include "op_route.h"
#include "op_route_align.h"
#include "op_rows.h"

/* The packed identity of a kernel module: op + normalised shape. Always zero-filled before
 * use so that memcmp and hashing see no stray bytes. */
typedef struct mj_kernel_id {
    int32_t op;
    int32_t reserved;
    union {
        mj_route_shape route;
        mj_permute_shape permute;
        mj_combine_shape combine;
        mj_align_shape align;
        mj_route_align_shape route_align;
        mj_mx_scales_shape mx_scales;
        uint8_t bytes[64];
    } u;
} mj_kernel_id;
/* route_align's shape is route's plus a block size: the largest one. */
_Static_assert(sizeof(mj_route_align_shape) <= 64, "a kernel shape must fit mj_kernel_id");

/* Validate a descriptor and build its packed id (errors name the field and value). */
moejit_status mj_kernel_id_from_desc(const moejit_kernel_desc *desc, mj_kernel_id *out);

/* Module name ("moejit_route_sigmoid_e384_k8_bf16"). Returns the length. */
int mj_kernel_module_name(const mj_kernel_id *id, char *buf, size_t cap);

/* Human-readable shape ("E=384 K=8 score=sigmoid dtype=bf16 bias renorm"). Returns the length. */
int mj_kernel_describe(const mj_kernel_id *id, char *buf, size_t cap);

/* Operation name ("route"), "unknown" for others. */
const char *mj_op_name(int op);

const char *mj_dtype_name(int dtype);        /* "f32", "bf16", "f16", or NULL */
const char *mj_score_name(int score);        /* "softmax", "sigmoid", "sqrt_softplus", or NULL */
const char *mj_group_score_name(int gscore); /* "max", "top2_sum", or NULL */
int mj_dtype_bytes(int dtype);

/* Parse names (as the CLI and manifests spell them); return -1 if unknown. */
int mj_dtype_parse(const char *s);
int mj_score_parse(const char *s);
int mj_group_score_parse(const char *s);

/* snprintf that appends at buf+*len and keeps *len the would-be length (for building names). */
void mj_appendf(char *buf, size_t cap, int *len, const char *fmt, ...) MJ_PRINTF(4, 5);

#endif
