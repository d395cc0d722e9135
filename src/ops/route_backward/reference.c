/* The C reference of route_backward (docs/DESIGN.md §2.1b): the definition GPU results are
 * checked against. Written for clarity, in double: the forward's weights as a function of the
 * logits (route steps 0-7, the ids held constant) and their derivative by the chain rule, step by
 * step backwards, rounded once to f32 at the end. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/numeric.h"
#include "moejit_reference.h"
#include "ops/route_backward/route_backward.h"

/* Step 0 as the forward reads a logit: NaN as -inf, ±inf as ±FLT_MAX. */
static double finite_logit(double x)
{
    if (isnan(x)) return -INFINITY;
    return fmin(fmax(x, -(double)FLT_MAX), (double)FLT_MAX);
}

static double sigmoid(double x) { return x >= 0.0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

/* softplus as the forward computes it: linear above 20 (PyTorch's threshold). */
static double softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }

static double score_of(int score, double x)
{
    return score == MOEJIT_SCORE_SIGMOID ? sigmoid(x) : sqrt(softplus(x));
}

/* d log(score) / dx = score'(x) / score(x): sigmoid 1 − σ(x) = σ(−x); sqrt(softplus(x))
 * σ(x) / (2·softplus(x)) below 20 and 1/(2x) above (the forward's function there is sqrt(x)), ½
 * where softplus underflows (the limit; the score is 0 there, so nothing is multiplied by it). */
static double score_log_derivative(int score, double x)
{
    if (score == MOEJIT_SCORE_SIGMOID) return sigmoid(-x);
    if (x > 20.0) return 0.5 / x;
    const double sp = log1p(exp(x));
    return sp > 0.0 ? sigmoid(x) / (2.0 * sp) : 0.5;
}

/* softmax of n values (finite or -inf) in double, as route's reference: all -inf gives zeros. */
static void softmax_exact(const double *x, double *out, int n)
{
    double m = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++) m = fmax(m, x[i]);
    if (m == -INFINITY) m = 0.0;
    for (int i = 0; i < n; i++) sum += exp(x[i] - m);
    for (int i = 0; i < n; i++) out[i] = sum > 0.0 ? exp(x[i] - m) / sum : 0.0;
}

static int64_t load_index(const void *base, int dtype, int64_t at)
{
    if (dtype == MOEJIT_INDEX_INT64) return ((const int64_t *)base)[at];
    if (dtype == MOEJIT_INDEX_INT16) return ((const int16_t *)base)[at];
    return ((const int32_t *)base)[at];
}

typedef struct row_work {
    double *f;      /* the logits after the soft cap, made finite (what the scores read) */
    double *dcap;   /* d(soft-capped logit)/d(logit): sech²(x/cap), 1 without a cap */
    double *s;      /* softmax over the row */
    double *df;     /* dL/df */
    unsigned char *is_nan;
    double *aux;    /* dL/df of the auxiliary losses (0 without them) */
} row_work;

/* One row: grad[E] from the logits x[E], the K routed ids and the K+S weight gradients. */
static void aux_gradient(const mj_route_backward_shape *r, const mj_route_backward_params *p, int64_t t, row_work *w);

static void row_gradient(const mj_route_backward_shape *r, const mj_route_backward_params *pr, int64_t t,
                         const float *x, const int64_t *ids, const float *gw, row_work *w, float *grad)
{
    const int E = r->experts, K = r->topk, S = r->shared_slots;
    const double cap = r->softcap, F = r->scaling_factor;
    const int row_softmax = r->score == MOEJIT_SCORE_SOFTMAX && !r->score_after_topk;
    const int after_softmax = r->score == MOEJIT_SCORE_SOFTMAX && r->score_after_topk;
    /* Step 0 */
    for (int e = 0; e < E; e++) {
        const double c = cap > 0.0 ? cap * tanh((double)x[e] / cap) : (double)x[e];
        w->is_nan[e] = isnan(c) != 0;
        w->f[e] = finite_logit(c);
        const double ch = cap > 0.0 ? cosh((double)x[e] / cap) : 1.0;
        w->dcap[e] = 1.0 / (ch * ch); /* 0 at ±inf */
        w->df[e] = 0.0;
    }
    int valid[MOEJIT_MAX_TOPK];
    /* q_in: its K entries are set before they are read; zeroed for gcc 12 Release (maybe-uninitialized) */
    double p[MOEJIT_MAX_TOPK], q_in[MOEJIT_MAX_TOPK] = {0};
    for (int k = 0; k < K; k++) valid[k] = ids[k] >= 0 && ids[k] < E;
    /* Steps 1 and 4: the K routed weights before renormalisation */
    if (row_softmax) softmax_exact(w->f, w->s, E);
    if (after_softmax) {
        for (int k = 0; k < K; k++) q_in[k] = valid[k] ? w->f[ids[k]] : -INFINITY;
        softmax_exact(q_in, p, K);
    }
    for (int k = 0; k < K; k++) {
        if (!valid[k]) p[k] = 0.0;
        else if (row_softmax) p[k] = w->s[ids[k]];
        else if (!after_softmax) p[k] = score_of(r->score, w->f[ids[k]]);
    }
    /* Step 5: renormalisation */
    double routed = 0.0;
    for (int k = 0; k < K; k++) routed += p[k];
    const int renormed = r->renormalize && routed > 0.0;
    double wt[2 * MOEJIT_MAX_TOPK];
    for (int k = 0; k < K; k++) wt[k] = renormed ? p[k] / routed : p[k];
    const double routed_after = renormed ? 1.0 : routed;
    /* Step 6: shared slots */
    for (int j = 0; j < S; j++) wt[K + j] = routed_after / F;
    /* Backwards. Step 7: scaling, and the clamp to FLT_MAX (no gradient where it clamped). */
    const double scale = r->scale_output ? F : 1.0;
    double a[2 * MOEJIT_MAX_TOPK]; /* dL/dw_j */
    for (int j = 0; j < K + S; j++) a[j] = wt[j] * scale > (double)FLT_MAX ? 0.0 : (double)gw[j] * scale;
    /* Step 6: the shared weights read the routed sum after step 5 */
    double g_routed = 0.0;
    for (int j = 0; j < S; j++) g_routed += a[K + j] / F;
    /* Step 5: every later step multiplies dL/dp_k by a term proportional to p_k (the scores'
     * Jacobians), so carry g_k = dL/dp_k · p_k: with renormalisation (w = p/R) that is
     * (a_k − Σ_i a_i·w_i)·w_k, which no small R can overflow, and the routed sum after it is the
     * constant 1 (the shared slots reach nothing); otherwise (a_k + g_routed)·p_k. */
    double g[MOEJIT_MAX_TOPK], g_sum = 0.0;
    if (renormed) {
        double aw = 0.0;
        for (int k = 0; k < K; k++) aw += valid[k] ? a[k] * wt[k] : 0.0;
        for (int k = 0; k < K; k++) g[k] = valid[k] ? (a[k] - aw) * wt[k] : 0.0;
    } else {
        for (int k = 0; k < K; k++) g[k] = valid[k] ? (a[k] + g_routed) * p[k] : 0.0;
    }
    for (int k = 0; k < K; k++) g_sum += g[k];
    /* Steps 4 and 1: dL/df, from ds_e/df_j = s_e·(δ_ej − s_j) for a softmax and score'(x) =
     * score(x)·d log(score)/dx for the elementwise scores */
    if (row_softmax) { /* s_e·(D_e − Σ_k D_k·p_k), D_e = Σ_{k: id_k = e} dL/dp_k, for every e of the row */
        for (int k = 0; k < K; k++)
            if (valid[k]) w->df[ids[k]] += g[k]; /* s_e·dL/dp_k: p_k is s_e */
        for (int e = 0; e < E; e++) w->df[e] -= w->s[e] * g_sum;
    } else if (after_softmax) { /* the same Jacobian over the K chosen */
        for (int k = 0; k < K; k++)
            if (valid[k]) w->df[ids[k]] += g[k] - p[k] * g_sum;
    } else {
        for (int k = 0; k < K; k++)
            if (valid[k]) w->df[ids[k]] += g[k] * score_log_derivative(r->score, w->f[ids[k]]);
    }
    if (r->aux_stats) aux_gradient(r, pr, t, w); /* before the soft cap, like the weights' */
    /* Step 0: the soft cap; NaN logits get nothing; f32, finite (NaN stays NaN: a NaN gradient in) */
    for (int e = 0; e < E; e++) {
        const double d = w->is_nan[e] ? 0.0 : (w->df[e] + w->aux[e]) * w->dcap[e];
        grad[e] = isnan(d) ? (float)d : (float)fmin(fmax(d, -(double)FLT_MAX), (double)FLT_MAX);
    }
}

/* The sequence of token t, as route's reference finds it. */
static int64_t sequence_of(const mj_route_backward_shape *r, const mj_route_backward_params *p, int64_t t)
{
    return mj_aux_sequence_of(p->seq_offsets, r->seq_offset_dtype, p->num_seqs, t);
}

/* dL/df of gl[0]·L_aux + gl[1]·L_seq + gl[2]·L_z for row t into w->aux (w->f holds the row), the
 * counts constant: g_e = dL/dp_e through the aux scores (moejit.h Operation 1b), in double. */
static void aux_gradient(const mj_route_backward_shape *r, const mj_route_backward_params *p, int64_t t, row_work *w)
{
    const int E = r->experts;
    const double K = r->topk, T = (double)p->num_tokens;
    const float *gl = p->grad_losses;
    double *g = w->s; /* scratch: the row softmax is recomputed below when needed */
    double ge[MOEJIT_MAX_EXPERTS];
    for (int e = 0; e < E; e++) ge[e] = 0.0, w->aux[e] = 0.0;
    if (!gl) return;
    const int64_t n = (r->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? p->num_seqs : 1;
    if (r->aux_stats & MOEJIT_AUX_LOAD_BALANCE)
        for (int e = 0; e < E; e++) {
            double c = 0.0;
            for (int64_t q = 0; q < n; q++) c += p->aux_counts[q * E + e];
            ge[e] += (double)gl[0] * E * c / (K * T * T);
        }
    if (r->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) {
        const int64_t s = sequence_of(r, p, t);
        if (s >= 0) {
            const int dt = r->seq_offset_dtype;
            const double L = (double)(load_index(p->seq_offsets, dt, s + 1) - load_index(p->seq_offsets, dt, s));
            for (int e = 0; e < E; e++) ge[e] += (double)gl[1] * E * p->aux_counts[s * E + e] / ((double)n * K * L * L);
        }
    }
    double m = -INFINITY, sum = 0.0;
    for (int e = 0; e < E; e++) m = fmax(m, w->f[e]);
    if (m == -INFINITY) m = 0.0;
    for (int e = 0; e < E; e++) sum += exp(w->f[e] - m);
    for (int e = 0; e < E; e++) g[e] = sum > 0.0 ? exp(w->f[e] - m) / sum : 0.0; /* softmax of the row */
    if (r->aux_stats & (MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE)) {
        double nrm = 1e-20, G = 0.0;
        if (r->score != MOEJIT_SCORE_SOFTMAX)
            for (int e = 0; e < E; e++) nrm += w->f[e] == -INFINITY ? 0.0 : score_of(r->score, w->f[e]);
        for (int e = 0; e < E; e++) {
            const double q = r->score == MOEJIT_SCORE_SOFTMAX ? g[e]
                             : w->f[e] == -INFINITY           ? 0.0
                                                               : score_of(r->score, w->f[e]) / nrm;
            G += ge[e] * q;
        }
        for (int e = 0; e < E; e++) {
            if (w->f[e] == -INFINITY) continue;
            if (r->score == MOEJIT_SCORE_SOFTMAX) {
                w->aux[e] += g[e] * (ge[e] - G);
            } else {
                /* score'(x) = score(x) · d log(score)/dx */
                const double d = score_of(r->score, w->f[e]) * score_log_derivative(r->score, w->f[e]);
                w->aux[e] += d / nrm * (ge[e] - G);
            }
        }
    }
    if (r->aux_stats & MOEJIT_AUX_Z_LOSS) {
        const double lse = sum > 0.0 ? m + log(sum) : 0.0;
        for (int e = 0; e < E; e++) w->aux[e] += (double)gl[2] * 2.0 * lse / T * g[e];
    }
}

moejit_status moejit_route_backward_reference(const moejit_route_backward_spec *spec,
                                              const moejit_route_backward_args *a)
{
    mj_error_clear();
    mj_route_backward_shape r;
    mj_route_backward_params p;
    moejit_status st = mj_route_backward_normalize(spec, &r);
    if (st == MOEJIT_OK) st = mj_route_backward_check_args(&r, a, &p); /* the launch's own checks */
    if (st != MOEJIT_OK || p.num_tokens == 0) return st;
    const size_t E = (size_t)r.experts;
    row_work w = {malloc(E * sizeof(double)), malloc(E * sizeof(double)), malloc(E * sizeof(double)),
                  malloc(E * sizeof(double)), malloc(E), calloc(E, sizeof(double))};
    float *x = malloc(E * sizeof(float));
    if (!w.f || !w.dcap || !w.s || !w.df || !w.is_nan || !w.aux || !x) {
        free(w.f), free(w.dcap), free(w.s), free(w.df), free(w.is_nan), free(w.aux), free(x);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "route_backward reference: out of memory");
    }
    const int elem = mj_dtype_bytes(r.dtype), slots = r.topk + r.shared_slots;
    for (int64_t t = 0; t < p.num_tokens; t++) {
        const char *src = (const char *)p.logits + (size_t)(t * p.row_stride) * (size_t)elem;
        for (size_t e = 0; e < E; e++) x[e] = mj_load_as_f32(src, r.dtype, (int64_t)e);
        int64_t ids[MOEJIT_MAX_TOPK];
        for (int k = 0; k < r.topk; k++) ids[k] = load_index(p.ids, r.id_dtype, t * slots + k);
        row_gradient(&r, &p, t, x, ids, p.grad_weights + t * slots, &w, p.grad_logits + t * (int64_t)E);
    }
    free(w.f), free(w.dcap), free(w.s), free(w.df), free(w.is_nan), free(w.aux), free(x);
    return MOEJIT_OK;
}
