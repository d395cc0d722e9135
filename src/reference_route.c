/* The C reference of route (DESIGN §2.1): the definition GPU results are checked against.
 * Written for clarity and computed in double precision, so that it stands for the exact
 * function; the f32 kernels are compared with it within a stated tolerance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "numeric.h"
#include "reference.h"

static double score_elementwise(int score, double x)
{
    if (score == MOEJIT_SCORE_SIGMOID) return 1.0 / (1.0 + exp(-x));
    return sqrt(x > 20.0 ? x : log1p(exp(x))); /* sqrt(softplus), linear above 20 like PyTorch */
}

static void softmax(const double *x, double *out, int n)
{
    double m = x[0];
    for (int i = 1; i < n; i++) m = fmax(m, x[i]);
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (out[i] = exp(x[i] - m));
    for (int i = 0; i < n; i++) out[i] /= sum;
}

/* a ranks strictly above b: NaN ranks below every number, equal values do not (ties keep the
 * lower index), -0 equals +0. */
static int ranks_above(double a, double b)
{
    if (isnan(a)) return 0;
    if (isnan(b)) return 1;
    return a > b;
}

/* Best candidate among experts with allowed[e] set; lowest index on ties. */
static int argmax(const double *sel, const unsigned char *allowed, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (allowed[i] && (best < 0 || ranks_above(sel[i], sel[best]))) best = i;
    return best;
}

typedef struct row_scratch {
    double *x, *val, *sel;
    unsigned char *allowed;
} row_scratch;

/* Scores and selection values of a row whose (soft-capped) logits are in x. */
static void row_values(const mj_route_shape *r, const double *x, const float *bias, double *val, double *sel)
{
    const int E = r->experts;
    if (r->score_after_topk) memcpy(val, x, sizeof(double) * (size_t)E);
    else if (r->score == MOEJIT_SCORE_SOFTMAX) softmax(x, val, E);
    else
        for (int e = 0; e < E; e++) val[e] = score_elementwise(r->score, x[e]);
    for (int e = 0; e < E; e++) sel[e] = r->has_bias ? val[e] + (double)bias[e] : val[e];
}

static double softcapped(const mj_route_shape *r, float x)
{
    return r->softcap > 0.0f ? (double)r->softcap * tanh((double)x / (double)r->softcap) : (double)x;
}

void mj_route_row_values(const mj_route_shape *r, const float *logits, const float *bias, double *val, double *sel)
{
    for (int e = 0; e < r->experts; e++) sel[e] = softcapped(r, logits[e]);
    row_values(r, sel, bias, val, sel); /* sel doubles as x: each x[e] is read before sel[e] is written */
}

static void route_row(const mj_route_shape *r, row_scratch *w, const float *bias, int32_t *ids, float *weights)
{
    const int E = r->experts, K = r->topk, S = r->shared_slots;
    /* 1-2. scores (or raw logits when scoring after the top-k) and selection values */
    row_values(r, w->x, bias, w->val, w->sel);
    memset(w->allowed, 1, (size_t)E);
    /* 3. top-K in descending order, ties to the lower index */
    double wt[2 * MOEJIT_MAX_TOPK];
    for (int k = 0; k < K; k++) {
        const int e = argmax(w->sel, w->allowed, E);
        w->allowed[e] = 0;
        ids[k] = e;
        wt[k] = w->val[e];
    }
    /* 4. weights */
    if (r->score_after_topk) {
        if (r->score == MOEJIT_SCORE_SOFTMAX) {
            double chosen[2 * MOEJIT_MAX_TOPK];
            memcpy(chosen, wt, sizeof(double) * (size_t)K);
            softmax(chosen, wt, K);
        } else {
            for (int k = 0; k < K; k++) wt[k] = score_elementwise(r->score, wt[k]);
        }
    }
    double routed = 0.0;
    for (int k = 0; k < K; k++) routed += wt[k];
    if (r->renormalize && routed > 0.0) {
        for (int k = 0; k < K; k++) wt[k] /= routed;
        routed = 1.0;
    }
    /* 5. shared slots: the routed sum (after renormalisation, before scaling) / factor */
    for (int j = 0; j < S; j++) {
        ids[K + j] = E + j;
        wt[K + j] = routed / (double)r->scaling_factor;
    }
    if (r->scale_output)
        for (int k = 0; k < K; k++) wt[k] *= (double)r->scaling_factor;
    for (int j = 0; j < K + S; j++) weights[j] = (float)wt[j];
}

moejit_status moejit_route_reference(const moejit_route_spec *spec, const void *logits, int64_t num_tokens,
                                     int64_t row_stride, const float *bias, int32_t *ids, float *weights)
{
    mj_route_shape r;
    moejit_status st = mj_route_normalize(spec, &r);
    if (st != MOEJIT_OK) return st;
    if (r.groups > 1) return mj_fail(MOEJIT_ERR_UNSUPPORTED, "route reference: grouped selection is not implemented yet");
    if (num_tokens < 0)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route reference: num_tokens = %lld must be >= 0", (long long)num_tokens);
    if (num_tokens == 0) return MOEJIT_OK;
    const int64_t stride = row_stride ? row_stride : r.experts;
    if (stride < r.experts)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route reference: row_stride = %lld is smaller than num_experts = %d",
                       (long long)row_stride, r.experts);
    if (!logits || !ids || !weights || (r.has_bias && !bias))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route reference: %s is NULL",
                       !logits ? "logits" : !ids ? "ids" : !weights ? "weights" : "bias");
    const size_t E = (size_t)r.experts;
    row_scratch w = {malloc(E * sizeof(double)), malloc(E * sizeof(double)), malloc(E * sizeof(double)), malloc(E)};
    if (!w.x || !w.val || !w.sel || !w.allowed) {
        free(w.x), free(w.val), free(w.sel), free(w.allowed);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "route reference: out of memory");
    }
    const int elem = mj_dtype_bytes(r.dtype), out_w = r.topk + r.shared_slots;
    for (int64_t t = 0; t < num_tokens; t++) {
        const char *row = (const char *)logits + (size_t)(t * stride) * (size_t)elem;
        for (size_t e = 0; e < E; e++) w.x[e] = softcapped(&r, mj_load_as_f32(row, r.dtype, (int64_t)e));
        route_row(&r, &w, bias, ids + t * out_w, weights + t * out_w);
    }
    free(w.x), free(w.val), free(w.sel), free(w.allowed);
    return MOEJIT_OK;
}
