/* Route spec validation, normalisation and naming. */
#include "spec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

static const char *const k_dtype_names[] = {"f32", "bf16", "f16"};
static const char *const k_score_names[] = {"softmax", "sigmoid", "sqrt_softplus"};
static const char *const k_group_score_names[] = {"max", "top2_sum"};

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *mj_dtype_name(int d) { return d >= 0 && d < COUNT_OF(k_dtype_names) ? k_dtype_names[d] : NULL; }
const char *mj_score_name(int s) { return s >= 0 && s < COUNT_OF(k_score_names) ? k_score_names[s] : NULL; }
const char *mj_group_score_name(int g)
{
    return g >= 0 && g < COUNT_OF(k_group_score_names) ? k_group_score_names[g] : NULL;
}
int mj_dtype_bytes(int d) { return d == MOEJIT_DTYPE_F32 ? 4 : 2; }

static int parse_name(const char *s, const char *const *names, int n)
{
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

int mj_dtype_parse(const char *s)
{
    if (s && (!strcmp(s, "float32") || !strcmp(s, "fp32"))) return MOEJIT_DTYPE_F32;
    if (s && (!strcmp(s, "bfloat16"))) return MOEJIT_DTYPE_BF16;
    if (s && (!strcmp(s, "float16") || !strcmp(s, "fp16") || !strcmp(s, "half"))) return MOEJIT_DTYPE_F16;
    return parse_name(s, k_dtype_names, COUNT_OF(k_dtype_names));
}
int mj_score_parse(const char *s) { return parse_name(s, k_score_names, COUNT_OF(k_score_names)); }
int mj_group_score_parse(const char *s)
{
    return parse_name(s, k_group_score_names, COUNT_OF(k_group_score_names));
}

#define SPEC_ERR(status, ...) mj_fail(status, "route spec: " __VA_ARGS__)

moejit_status mj_route_normalize(const moejit_route_spec *spec, mj_route_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route spec: spec is NULL");
    if (!out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route spec: output is NULL");
    memset(out, 0, sizeof *out);

    const int e = spec->num_experts, k = spec->topk;
    if (e < 1) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_experts = %d must be >= 1", e);
    if (e > MOEJIT_MAX_EXPERTS)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "num_experts = %d exceeds the maximum %d", e, MOEJIT_MAX_EXPERTS);
    if (k < 1) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk = %d must be >= 1", k);
    if (k > e) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk = %d exceeds num_experts = %d", k, e);
    if (k > MOEJIT_MAX_TOPK)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "topk = %d exceeds the maximum %d", k, MOEJIT_MAX_TOPK);
    if (!mj_score_name((int)spec->score))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "score = %d is not a moejit_score (0 softmax, 1 sigmoid, 2 sqrt_softplus)",
                        (int)spec->score);
    if (!mj_dtype_name((int)spec->dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "dtype = %d is not a moejit_dtype (0 f32, 1 bf16, 2 f16)",
                        (int)spec->dtype);

    int g = spec->num_groups;
    if (g < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d must be >= 0", g);
    if (g == 0) g = 1;
    if (g > e) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d exceeds num_experts = %d", g, e);
    if (e % g) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d does not divide num_experts = %d", g, e);
    int tg = spec->topk_groups;
    if (tg < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk_groups = %d must be >= 0", tg);
    if (tg == 0) tg = g;
    if (tg > g) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk_groups = %d exceeds num_groups = %d", tg, g);
    if ((int64_t)k > (int64_t)tg * (e / g))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "topk = %d exceeds the %d experts of the topk_groups = %d kept groups (%d experts each)", k,
                        tg * (e / g), tg, e / g);
    if (g > 1 && !mj_group_score_name((int)spec->group_score))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "group_score = %d is not a moejit_group_score (0 max, 1 top2_sum)",
                        (int)spec->group_score);
    if (g > 1 && spec->group_score == MOEJIT_GROUP_SCORE_TOP2_SUM && e / g < 2)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "group_score = top2_sum needs >= 2 experts per group, got %d", e / g);

    const float cap = spec->softcap;
    if (!(cap >= 0.0f) || isinf(cap))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "softcap = %g must be finite and >= 0 (0 = off)", (double)cap);
    float factor = spec->routed_scaling_factor;
    if (factor == 0.0f) factor = 1.0f;
    if (!(factor > 0.0f) || isinf(factor))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "routed_scaling_factor = %g must be finite and > 0",
                        (double)spec->routed_scaling_factor);
    const int s = spec->shared_slots;
    if (s < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "shared_slots = %d must be >= 0", s);
    if (s > MOEJIT_MAX_TOPK)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "shared_slots = %d exceeds the maximum %d", s, MOEJIT_MAX_TOPK);

    out->experts = e;
    out->topk = k;
    out->score = (int32_t)spec->score;
    out->dtype = (int32_t)spec->dtype;
    out->groups = g;
    out->topk_groups = tg;
    out->group_score = g > 1 ? (int32_t)spec->group_score : 0;
    out->has_bias = spec->has_bias != 0;
    out->softcap = cap;
    out->score_after_topk = spec->score_after_topk != 0;
    out->renormalize = spec->renormalize != 0;
    /* Scaling by exactly 1 is the identity: one kernel, not two. */
    out->scale_output = spec->scale_output != 0 && factor != 1.0f;
    out->scaling_factor = (out->scale_output || s > 0) ? factor : 1.0f;
    out->shared_slots = s;
    return MOEJIT_OK;
}

moejit_status mj_kernel_id_from_desc(const moejit_kernel_desc *desc, mj_kernel_id *out)
{
    if (!desc) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "kernel descriptor is NULL");
    memset(out, 0, sizeof *out);
    out->op = (int32_t)desc->op;
    switch (desc->op) {
    case MOEJIT_OP_ROUTE: return mj_route_normalize(&desc->route, &out->u.route);
    }
    return mj_fail(MOEJIT_ERR_INVALID_SPEC, "kernel descriptor: op = %d is not a moejit_op", (int)desc->op);
}

/* "2.5" → "2p5" so that numbers can appear in C identifiers. */
static void number_token(float v, char *buf, size_t cap)
{
    snprintf(buf, cap, "%g", (double)v);
    for (char *p = buf; *p; p++) {
        if (*p == '.') *p = 'p';
        else if (*p == '-') *p = 'm';
        else if (*p == '+') *p = 'x';
    }
}

static int route_entry_name(const mj_route_shape *r, char *buf, size_t cap)
{
    char tmp[32];
    int n = snprintf(buf, cap, "moejit_route_%s_e%d_k%d", mj_score_name(r->score), r->experts, r->topk);
#define APPEND(...) n += snprintf(buf + (n < (int)cap ? n : (int)cap), (size_t)n < cap ? cap - (size_t)n : 0, __VA_ARGS__)
    if (r->groups > 1) {
        APPEND("_g%d_tg%d", r->groups, r->topk_groups);
        if (r->group_score == MOEJIT_GROUP_SCORE_TOP2_SUM) APPEND("_top2sum");
    }
    if (r->has_bias) APPEND("_bias");
    if (r->softcap > 0.0f) {
        number_token(r->softcap, tmp, sizeof tmp);
        APPEND("_cap%s", tmp);
    }
    if (r->score_after_topk) APPEND("_after");
    if (r->renormalize) APPEND("_renorm");
    if (r->scale_output || r->shared_slots) {
        number_token(r->scaling_factor, tmp, sizeof tmp);
        APPEND("_x%s", tmp);
        if (!r->scale_output) APPEND("u"); /* factor used by shared slots only: weights unscaled */
    }
    if (r->shared_slots) APPEND("_s%d", r->shared_slots);
    APPEND("_%s", mj_dtype_name(r->dtype));
#undef APPEND
    return n;
}

int mj_kernel_entry_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    switch (id->op) {
    case MOEJIT_OP_ROUTE: return route_entry_name(&id->u.route, buf, cap);
    }
    return snprintf(buf, cap, "moejit_unknown");
}

const char *mj_op_name(int op)
{
    switch (op) {
    case MOEJIT_OP_ROUTE: return "route";
    }
    return "unknown";
}

static int route_describe(const mj_route_shape *r, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "E=%d K=%d score=%s dtype=%s", r->experts, r->topk, mj_score_name(r->score),
                     mj_dtype_name(r->dtype));
#define APPEND(...) n += snprintf(buf + (n < (int)cap ? n : (int)cap), (size_t)n < cap ? cap - (size_t)n : 0, __VA_ARGS__)
    if (r->groups > 1) APPEND(" G=%d TG=%d group_score=%s", r->groups, r->topk_groups, mj_group_score_name(r->group_score));
    if (r->has_bias) APPEND(" bias");
    if (r->softcap > 0.0f) APPEND(" softcap=%g", (double)r->softcap);
    if (r->score_after_topk) APPEND(" score_after_topk");
    if (r->renormalize) APPEND(" renormalize");
    if (r->scale_output) APPEND(" scale=%g", (double)r->scaling_factor);
    if (r->shared_slots) APPEND(" shared_slots=%d factor=%g", r->shared_slots, (double)r->scaling_factor);
#undef APPEND
    return n;
}

int mj_kernel_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    switch (id->op) {
    case MOEJIT_OP_ROUTE: return route_describe(&id->u.route, buf, cap);
    }
    return snprintf(buf, cap, "?");
}
