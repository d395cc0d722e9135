/* capacity's spec and arguments: validation and normalisation, its names, the capacity C from
 * Megatron's formula, and the argument checks the launch and the reference share. */
#include "ops/capacity/capacity.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/strbuf.h"

#define SPEC_ERR(status, ...) mj_fail(status, "capacity spec: " __VA_ARGS__)
#define ARGS_ERR(status, ...) mj_fail(status, "capacity args: " __VA_ARGS__)

moejit_status mj_capacity_normalize(const moejit_capacity_spec *spec, mj_capacity_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "capacity spec: spec is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("capacity spec", spec);
    if (st != MOEJIT_OK) return st;
    const int e = spec->num_experts, k = spec->topk, s = spec->shared_slots;
    if ((st = mj_check_spec_count("capacity spec", "num_experts", e, 1, MOEJIT_MAX_EXPERTS)) != MOEJIT_OK ||
        (st = mj_check_spec_count("capacity spec", "topk", k, 1, MOEJIT_MAX_TOPK)) != MOEJIT_OK ||
        (st = mj_check_spec_count("capacity spec", "shared_slots", s, 0, MOEJIT_MAX_TOPK)) != MOEJIT_OK)
        return st;
    if (!mj_index_dtype_name((int)spec->id_dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "id_dtype = %d is not a moejit_index_dtype (0 int32, 1 int64, 2 int16)", (int)spec->id_dtype);
    if (spec->policy != MOEJIT_DROP_PROBS && spec->policy != MOEJIT_DROP_POSITION)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "policy = %d is not a moejit_drop_policy (0 probs, 1 position)",
                        (int)spec->policy);
    out->experts = e;
    out->topk = k;
    out->shared = s;
    out->id_dtype = (int32_t)spec->id_dtype;
    out->policy = (int32_t)spec->policy;
    return MOEJIT_OK;
}

static const char *id_token(int d) { return d == MOEJIT_INDEX_INT64 ? "i64" : d == MOEJIT_INDEX_INT16 ? "i16" : "i32"; }

int mj_capacity_module_name(const mj_capacity_shape *s, char *buf, size_t cap)
{
    int n = 0;
    mj_appendf(buf, cap, &n, "moejit_capacity_%s_e%d_k%d_s%d_%s", s->policy == MOEJIT_DROP_POSITION ? "position" : "probs",
               s->experts, s->topk, s->shared, id_token(s->id_dtype));
    return n;
}

moejit_status mj_capacity_from_factor(const char *op, int64_t T, int32_t K, int32_t E, double factor, int32_t min_cap,
                                      int32_t *capacity)
{
    if (T < 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s: num_tokens = %lld must be >= 0", op, (long long)T);
    if (K < 1) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s: topk = %d must be >= 1", op, K);
    if (E < 1) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s: num_experts = %d must be >= 1", op, E);
    if (!(factor > 0) || !isfinite(factor))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s: capacity_factor = %g must be finite and > 0", op, factor);
    if (min_cap < 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s: min_capacity = %d must be >= 0", op, min_cap);
    if (T > INT64_MAX / K)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED, "%s: num_tokens = %lld × topk = %d overflows", op, (long long)T, K);
    /* Megatron: math.ceil((num_tokens / num_experts) * capacity_factor), Python floats are doubles */
    const double c = ceil(((double)(T * K) / (double)E) * factor);
    if (!(c <= (double)INT32_MAX))
        return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                       "%s: the capacity ceil((%lld / %d) × %g) = %g exceeds %d", op, (long long)(T * K), E, factor, c,
                       INT32_MAX);
    const int32_t v = (int32_t)c;
    *capacity = v < min_cap ? min_cap : v;
    return MOEJIT_OK;
}

moejit_status moejit_capacity_of(int64_t num_tokens, int32_t topk, int32_t num_experts, double capacity_factor,
                                 int32_t min_capacity, int32_t *capacity)
{
    mj_error_clear();
    if (!capacity) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_capacity_of: capacity is NULL");
    return mj_capacity_from_factor("moejit_capacity_of", num_tokens, topk, num_experts, capacity_factor, min_capacity,
                                   capacity);
}

/* An optional int32 output: NULL is fine, a misaligned pointer is not. */
static moejit_status check_optional(const char *name, const void *p)
{
    return p ? mj_check_pointer("capacity", name, p, 4) : MOEJIT_OK;
}

moejit_status mj_capacity_check_call(const moejit_capacity_spec *spec, const moejit_capacity_args *a,
                                     mj_capacity_shape *s, mj_capacity_params *p, int *launch)
{
    memset(p, 0, sizeof *p);
    *launch = 0;
    moejit_status st = mj_capacity_normalize(spec, s);
    if (st != MOEJIT_OK) return st;
    if (!a) return ARGS_ERR(MOEJIT_ERR_INVALID_ARGUMENT, "args is NULL");
    if ((st = MJ_CHECK_RESERVED("capacity args", a)) != MOEJIT_OK) return st;
    const int64_t T = a->num_tokens;
    if (T < 0) return ARGS_ERR(MOEJIT_ERR_INVALID_ARGUMENT, "num_tokens = %lld must be >= 0", (long long)T);
    if (T > INT32_MAX / s->topk)
        return ARGS_ERR(MOEJIT_ERR_UNSUPPORTED, "num_tokens = %lld × topk = %d slots exceed %d (counts are int32)",
                        (long long)T, s->topk, INT32_MAX);
    int32_t c;
    if (a->capacity < 0)
        return ARGS_ERR(MOEJIT_ERR_INVALID_ARGUMENT, "capacity = %d must be >= 0 (0: from capacity_factor)", a->capacity);
    if (a->capacity > 0) {
        if (a->capacity_factor != 0)
            return ARGS_ERR(MOEJIT_ERR_INVALID_ARGUMENT,
                            "capacity = %d and capacity_factor = %g are both set (give one)", a->capacity,
                            a->capacity_factor);
        if (a->min_capacity != 0)
            return ARGS_ERR(MOEJIT_ERR_INVALID_ARGUMENT,
                            "min_capacity = %d applies to capacity_factor only, not to capacity = %d", a->min_capacity,
                            a->capacity);
        c = a->capacity;
    } else {
        if (a->capacity_factor == 0)
            return ARGS_ERR(MOEJIT_ERR_INVALID_ARGUMENT, "neither capacity nor capacity_factor is set (give one)");
        if ((st = mj_capacity_from_factor("capacity args", T, s->topk, s->experts, a->capacity_factor, a->min_capacity,
                                          &c)) != MOEJIT_OK)
            return st;
    }
    const int64_t n = T * s->topk;
    if (n > 0) {
        if ((st = mj_check_pointer("capacity", "ids", a->ids, (size_t)mj_index_dtype_bytes(s->id_dtype))) != MOEJIT_OK ||
            (st = mj_check_pointer("capacity", "weights", a->weights, 4)) != MOEJIT_OK)
            return st;
    }
    if ((st = check_optional("tokens_per_expert", a->tokens_per_expert)) != MOEJIT_OK ||
        (st = check_optional("kept", a->kept)) != MOEJIT_OK)
        return st;
    p->ids = n ? a->ids : NULL;
    p->weights = n ? a->weights : NULL;
    p->tokens_per_expert = a->tokens_per_expert;
    p->kept = a->kept;
    p->n = (int32_t)n;
    p->capacity = c < n ? c : (int32_t)n; /* more than n drops nothing */
    *launch = n > 0 || a->tokens_per_expert || a->kept;
    return MOEJIT_OK;
}
