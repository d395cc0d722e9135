/* The C reference of route (DESIGN §2.1): the definition GPU results are checked against.
 * Written for clarity, in the same f32 operations and order of rounding as the kernel where the
 * order matters (softmax normalisation by a reciprocal, renormalisation by division). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "numeric.h"
#include "spec.h"

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static float sqrt_softplus(float x) { return sqrtf(x > 20.0f ? x : log1pf(expf(x))); }

static float score_elementwise(int score, float x)
{
    return score == MOEJIT_SCORE_SIGMOID ? sigmoid(x) : sqrt_softplus(x);
}

/* softmax of n values into out: exp(x - max) times the reciprocal of the sum. */
static void softmax(const float *x, float *out, int n)
{
    float m = x[0];
    for (int i = 1; i < n; i++) m = fmaxf(m, x[i]);
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        out[i] = expf(x[i] - m);
        sum += out[i];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) out[i] *= inv;
}

/* Index of the largest key among `n`, lowest index on ties; keys of 0 are never chosen. */
static int argmax_key(const uint32_t *key, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (key[i] && (best < 0 || key[i] > key[best])) best = i;
    return best;
}

static void route_row(const mj_route_shape *r, const float *x, const float *bias, float *val, uint32_t *key,
                      int32_t *ids, float *weights)
{
    const int E = r->experts, K = r->topk, S = r->shared_slots;
    /* 1. scores (or raw logits when scoring after the top-k) */
    if (r->score_after_topk) memcpy(val, x, sizeof(float) * (size_t)E);
    else if (r->score == MOEJIT_SCORE_SOFTMAX) softmax(x, val, E);
    else
        for (int e = 0; e < E; e++) val[e] = score_elementwise(r->score, x[e]);
    /* 2. selection keys: score + bias */
    for (int e = 0; e < E; e++) key[e] = mj_order_key(r->has_bias ? val[e] + bias[e] : val[e]);
    /* 3. top-K, descending, ties to the lower index */
    float w[2 * MOEJIT_MAX_TOPK];
    for (int k = 0; k < K; k++) {
        const int e = argmax_key(key, E);
        ids[k] = e;
        w[k] = val[e];
        key[e] = 0;
    }
    /* 4. weights */
    if (r->score_after_topk) {
        if (r->score == MOEJIT_SCORE_SOFTMAX) {
            float chosen[2 * MOEJIT_MAX_TOPK];
            memcpy(chosen, w, sizeof(float) * (size_t)K);
            softmax(chosen, w, K);
        } else {
            for (int k = 0; k < K; k++) w[k] = score_elementwise(r->score, w[k]);
        }
    }
    float routed = 0.0f;
    for (int k = 0; k < K; k++) routed += w[k];
    if (r->renormalize && routed > 0.0f) {
        const float sum = routed;
        routed = 0.0f;
        for (int k = 0; k < K; k++) {
            w[k] = w[k] / sum;
            routed += w[k];
        }
    }
    for (int j = 0; j < S; j++) {
        ids[K + j] = E + j;
        w[K + j] = routed / r->scaling_factor;
    }
    if (r->scale_output)
        for (int k = 0; k < K; k++) w[k] *= r->scaling_factor;
    memcpy(weights, w, sizeof(float) * (size_t)(K + S));
}

moejit_status moejit_route_reference(const moejit_route_spec *spec, const void *logits, int64_t num_tokens,
                                     int64_t row_stride, const float *bias, int32_t *ids, float *weights)
{
    mj_route_shape r;
    moejit_status st = mj_route_normalize(spec, &r);
    if (st != MOEJIT_OK) return st;
    if (r.groups > 1) return mj_fail(MOEJIT_ERR_UNSUPPORTED, "route reference: grouped selection is not implemented yet");
    if (num_tokens < 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route reference: num_tokens = %lld must be >= 0", (long long)num_tokens);
    if (num_tokens == 0) return MOEJIT_OK;
    const int64_t stride = row_stride ? row_stride : r.experts;
    if (stride < r.experts)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route reference: row_stride = %lld is smaller than num_experts = %d",
                       (long long)row_stride, r.experts);
    if (!logits || !ids || !weights || (r.has_bias && !bias))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route reference: %s is NULL",
                       !logits ? "logits" : !ids ? "ids" : !weights ? "weights" : "bias");
    const size_t E = (size_t)r.experts;
    float *x = malloc(E * sizeof *x), *val = malloc(E * sizeof *val);
    uint32_t *key = malloc(E * sizeof *key);
    if (!x || !val || !key) {
        free(x), free(val), free(key);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "route reference: out of memory");
    }
    const int elem = mj_dtype_bytes(r.dtype), out_w = r.topk + r.shared_slots;
    for (int64_t t = 0; t < num_tokens; t++) {
        const char *row = (const char *)logits + (size_t)(t * stride) * (size_t)elem;
        for (size_t e = 0; e < E; e++) {
            x[e] = mj_load_as_f32(row, r.dtype, (int64_t)e);
            if (r.softcap > 0.0f) x[e] = r.softcap * tanhf(x[e] / r.softcap);
        }
        route_row(&r, x, bias, val, key, ids + t * out_w, weights + t * out_w);
    }
    free(x), free(val), free(key);
    return MOEJIT_OK;
}
