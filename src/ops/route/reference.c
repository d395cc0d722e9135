/* The C reference of route (docs/DESIGN.md §2.1): the definition GPU results are checked against.
 *
 * Written for clarity. Each score is computed exactly (in double) and rounded to f32, then the
 * selection follows the f32 rules of the spec (sel = f32(score + bias), NaN lowest, ties to the
 * lower index); weights are derived in double and rounded once. The kernels differ from this only
 * by the few-ulp error of f32 math functions. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/numeric.h"
#include "moejit_reference.h"
#include "ops/route/route.h"

static double score_elementwise(int score, double x)
{
    if (score == MOEJIT_SCORE_SIGMOID) return 1.0 / (1.0 + exp(-x));
    return sqrt(x > 20.0 ? x : log1p(exp(x))); /* sqrt(softplus), linear above 20 like PyTorch */
}

/* softmax of n values (finite or -inf) in double; all -inf (every logit NaN) gives zeros */
static void softmax_exact(double *x, int n)
{
    double m = x[0], sum = 0.0;
    for (int i = 1; i < n; i++) m = fmax(m, x[i]);
    if (m == -INFINITY) m = 0.0; /* every term is then exp(-inf) = 0 */
    for (int i = 0; i < n; i++) sum += exp(x[i] - m);
    for (int i = 0; i < n; i++) x[i] = sum > 0.0 ? exp(x[i] - m) / sum : 0.0;
}

/* The logit a score is computed from, after the soft cap: NaN reads as -inf, ±inf as ±FLT_MAX, so
 * that scores and weights are finite for any input. */
static double finite_logit(double x)
{
    if (isnan(x)) return -INFINITY;
    return fmin(fmax(x, -(double)FLT_MAX), (double)FLT_MAX);
}

/* a ranks strictly above b: NaN below every number; equal values do not (ties keep the lower
 * index); -0 equals +0. */
static int ranks_above(float a, float b)
{
    if (isnan(a)) return 0;
    if (isnan(b)) return 1;
    return a > b;
}

/* Best allowed candidate, lowest index on ties; -1 if none. */
static int argmax(const float *v, const unsigned char *allowed, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (allowed[i] && (best < 0 || ranks_above(v[i], v[best]))) best = i;
    return best;
}

typedef struct row_work {
    double *raw;            /* soft-capped logits, as they are: what elementwise scores rank */
    double *x;              /* the same made finite (finite_logit): what softmax and weights read */
    double *exact;          /* scratch: exact scores */
    unsigned char *is_nan;  /* the soft-capped logit was NaN: ranks below every number */
    float *val, *sel;       /* f32 score and selection value per expert */
    float *gscore;          /* group scores */
    unsigned char *allowed; /* per expert */
    unsigned char *gallowed;
} row_work;

static double softcapped(const mj_route_shape *r, float x)
{
    return r->softcap > 0.0f ? (double)r->softcap * tanh((double)x / (double)r->softcap) : (double)x;
}

/* Steps 0-2: f32 scores (or logits) and selection values of the row. */
static void row_values(const mj_route_shape *r, const float *logits, const float *bias, row_work *w)
{
    const int E = r->experts;
    const int softmax = !r->score_after_topk && r->score == MOEJIT_SCORE_SOFTMAX;
    for (int e = 0; e < E; e++) {
        w->raw[e] = softcapped(r, logits[e]);
        w->is_nan[e] = isnan(w->raw[e]) != 0;
        w->x[e] = finite_logit(w->raw[e]);
    }
    /* Ranking reads the logits as they are (±inf the extremes, NaN below every number), except
     * softmax, whose sum needs them finite. */
    for (int e = 0; e < E; e++)
        w->exact[e] = r->score_after_topk ? w->raw[e] : softmax ? w->x[e] : score_elementwise(r->score, w->raw[e]);
    if (softmax) softmax_exact(w->exact, E);
    for (int e = 0; e < E; e++) w->val[e] = (float)w->exact[e];
    for (int e = 0; e < E; e++)
        w->sel[e] = w->is_nan[e] ? NAN : r->has_bias ? w->val[e] + bias[e] : w->val[e];
}

/* Step 3: group scores, and the experts of the TG best groups allowed. */
static void choose_groups(const mj_route_shape *r, row_work *w)
{
    const int E = r->experts, G = r->groups, GS = E / G;
    memset(w->allowed, 1, (size_t)E);
    if (G == 1) return;
    for (int g = 0; g < G; g++) {
        memset(w->allowed + g * GS, 1, (size_t)GS);
        const int a = argmax(w->sel + g * GS, w->allowed + g * GS, GS);
        float score = w->sel[g * GS + a];
        if (r->group_score == MOEJIT_GROUP_SCORE_TOP2_SUM) {
            w->allowed[g * GS + a] = 0;
            score = score + w->sel[g * GS + argmax(w->sel + g * GS, w->allowed + g * GS, GS)];
        }
        w->gscore[g] = score;
    }
    memset(w->gallowed, 1, (size_t)G);
    memset(w->allowed, 0, (size_t)E);
    for (int k = 0; k < r->topk_groups; k++) {
        const int g = argmax(w->gscore, w->gallowed, G);
        w->gallowed[g] = 0; /* taken */
        memset(w->allowed + g * GS, 1, (size_t)GS);
    }
}

/* Step 4: the top-K of the row in descending order of sel, ties to the lower index. */
static void choose(const mj_route_shape *r, row_work *w, int *picks)
{
    for (int k = 0; k < r->topk; k++) {
        const int e = argmax(w->sel, w->allowed, r->experts);
        w->allowed[e] = 0;
        picks[k] = e;
    }
}

/* Steps 4 (weights) to 7: the K+S weights of the picks (a pick of -1, a given id outside [0, E),
 * weighs nothing) and the shared slots' logical ids. row_values has run on the row. */
static void weigh(const mj_route_shape *r, const row_work *w, const int *picks, int32_t *ids, float *weights)
{
    const int E = r->experts, K = r->topk, S = r->shared_slots;
    double wt[2 * MOEJIT_MAX_TOPK];
    for (int k = 0; k < K; k++) {
        const int e = picks[k];
        ids[k] = e;
        /* weights read the finite logit (the score rounded to f32, as the ranking's is) */
        wt[k] = e < 0                                 ? (r->score_after_topk ? -INFINITY : 0.0)
                : r->score_after_topk                 ? w->x[e]
                : r->score == MOEJIT_SCORE_SOFTMAX    ? (double)w->val[e]
                                                      : (double)(float)score_elementwise(r->score, w->x[e]);
    }
    if (r->score_after_topk) {
        if (r->score == MOEJIT_SCORE_SOFTMAX) {
            softmax_exact(wt, K);
        } else {
            for (int k = 0; k < K; k++) wt[k] = wt[k] == -INFINITY ? 0.0 : score_elementwise(r->score, wt[k]);
        }
    }
    /* Step 5: renormalise (never by zero), then shared slots, then scaling of every slot. */
    double routed = 0.0;
    for (int k = 0; k < K; k++) routed += wt[k];
    if (r->renormalize && routed > 0.0) {
        for (int k = 0; k < K; k++) wt[k] /= routed;
        routed = 1.0;
    }
    for (int j = 0; j < S; j++) {
        ids[K + j] = E + j;
        wt[K + j] = routed / (double)r->scaling_factor;
    }
    if (r->scale_output)
        for (int j = 0; j < K + S; j++) wt[j] *= (double)r->scaling_factor;
    /* Finite for any input: only an extreme factor could pass FLT_MAX. */
    for (int j = 0; j < K + S; j++) weights[j] = (float)fmin(wt[j], (double)FLT_MAX);
}

/* Step 10: the physical id of routed slot k of token t whose logical expert is e. */
static int64_t place(const mj_route_shape *r, const mj_route_params *p, int e, int64_t t, int k)
{
    if (!r->max_replicas || e < 0) return e;
    int64_t c = p->replica_count[e];
    c = c < 1 ? 1 : c > r->max_replicas ? r->max_replicas : c;
    const int64_t replica = (int64_t)(((uint64_t)t * (uint64_t)r->topk + (uint64_t)k) % (uint64_t)c);
    const int64_t ph = p->logical_to_physical[(int64_t)e * r->max_replicas + replica];
    return ph >= 0 && ph < r->physical_experts ? ph : -1;
}

static void store_index(void *base, int dtype, int64_t at, int64_t v)
{
    if (dtype == MOEJIT_INDEX_INT64) ((int64_t *)base)[at] = v;
    else if (dtype == MOEJIT_INDEX_INT16) ((int16_t *)base)[at] = (int16_t)v;
    else ((int32_t *)base)[at] = (int32_t)v;
}

static int64_t load_index(const void *base, int dtype, int64_t at)
{
    if (dtype == MOEJIT_INDEX_INT64) return ((const int64_t *)base)[at];
    if (dtype == MOEJIT_INDEX_INT16) return ((const int16_t *)base)[at];
    return ((const int32_t *)base)[at];
}

/* Steps 9-12 for one routed row: record, place, count, write ids in their type. */
static void write_row(const mj_route_shape *r, const mj_route_params *p, int64_t t, const int32_t *logical)
{
    const int K = r->topk, out = K + r->shared_slots;
    for (int j = 0; j < out; j++) {
        const int64_t at = t * out + j;
        if (r->replay == MOEJIT_REPLAY_RECORD) store_index(p->logical_ids, r->logical_id_dtype, at, logical[j]);
        const int64_t id = j < K ? place(r, p, logical[j], t, j) : (int64_t)r->physical_experts + (j - K);
        if (j < K && id >= 0 && r->load_counter == MOEJIT_LOAD_INT32) ((int32_t *)p->expert_load)[id] += 1;
        if (j < K && id >= 0 && r->load_counter == MOEJIT_LOAD_INT64) ((int64_t *)p->expert_load)[id] += 1;
        store_index(p->ids, r->id_dtype, at, id);
    }
}

/* Step 13: the aux scores of a row from its finite logits x (double), into q; returns lse. */
static double aux_scores(const mj_route_shape *r, const double *x, double *q)
{
    const int E = r->experts;
    double m = -INFINITY, sum = 0.0;
    for (int e = 0; e < E; e++) m = fmax(m, x[e]);
    if (m == -INFINITY) m = 0.0;
    for (int e = 0; e < E; e++) sum += exp(x[e] - m);
    if (r->score == MOEJIT_SCORE_SOFTMAX) {
        for (int e = 0; e < E; e++) q[e] = sum > 0.0 ? exp(x[e] - m) / sum : 0.0;
    } else {
        double n = 0.0;
        for (int e = 0; e < E; e++) n += (q[e] = x[e] == -INFINITY ? 0.0 : score_elementwise(r->score, x[e]));
        for (int e = 0; e < E; e++) q[e] /= n + 1e-20;
    }
    return sum > 0.0 ? m + log(sum) : 0.0;
}

/* The sequence of token t (off[s] <= t < off[s+1], the last such s), -1 when none. */
int64_t mj_aux_sequence_of(const void *offsets, int dtype, int64_t num_seqs, int64_t t)
{
    int64_t s = -1;
    for (int64_t i = 0; i <= num_seqs && load_index(offsets, dtype, i) <= t; i++) s = i;
    return s < num_seqs ? s : -1;
}

static int work_alloc(row_work *w, int E)
{
    const size_t n = (size_t)E;
    w->raw = malloc(n * sizeof(double));
    w->x = malloc(n * sizeof(double));
    w->exact = malloc(n * sizeof(double));
    w->is_nan = malloc(n);
    w->val = malloc(n * sizeof(float));
    w->sel = malloc(n * sizeof(float));
    w->gscore = malloc(n * sizeof(float));
    w->allowed = malloc(n);
    w->gallowed = malloc(n);
    return w->raw && w->x && w->exact && w->is_nan && w->val && w->sel && w->gscore && w->allowed && w->gallowed;
}

static void work_free(row_work *w)
{
    free(w->raw), free(w->x), free(w->exact), free(w->is_nan), free(w->val), free(w->sel), free(w->gscore), free(w->allowed), free(w->gallowed);
}

moejit_status moejit_route_reference(const moejit_route_spec *spec, const moejit_route_args *a)
{
    mj_error_clear();
    mj_route_shape r;
    mj_route_params p;
    moejit_status st = mj_route_normalize(spec, &r);
    if (st == MOEJIT_OK) st = mj_route_check_args("route", &r, a, &p); /* the launch's own checks */
    if (st != MOEJIT_OK || p.num_tokens == 0) return st;
    row_work w;
    float *row = malloc(sizeof(float) * (size_t)r.experts);
    if (!work_alloc(&w, r.experts) || !row) {
        work_free(&w);
        free(row);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "route reference: out of memory");
    }
    const int elem = mj_dtype_bytes(r.dtype), K = r.topk, out = K + r.shared_slots;
    /* Step 13: Σp per (sequence, expert) in double, added to prob_sums once at the end */
    const int balance = (r.aux_stats & (MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE)) != 0;
    const int64_t nseq = (r.aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? p.num_seqs : 1;
    double *psum = balance ? calloc((size_t)(nseq * r.experts), sizeof(double)) : NULL;
    double *q = r.aux_stats ? malloc(sizeof(double) * (size_t)r.experts) : NULL;
    if ((balance && !psum) || (r.aux_stats && !q)) {
        free(psum), free(q), work_free(&w), free(row);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "route reference: out of memory");
    }
    /* Step 8: rows at or past the count read nothing */
    int64_t valid = p.num_tokens;
    if (r.padded) valid = *p.num_valid < 0 ? 0 : *p.num_valid < valid ? *p.num_valid : valid;
    for (int64_t t = 0; t < valid; t++) {
        const char *src = (const char *)p.logits + (size_t)(t * p.row_stride) * (size_t)elem;
        for (int e = 0; e < r.experts; e++) row[e] = mj_load_as_f32(src, r.dtype, e);
        row_values(&r, row, p.bias, &w);
        int picks[MOEJIT_MAX_TOPK];
        if (r.replay == MOEJIT_REPLAY_GIVEN) { /* step 9: the given ids replace the selection */
            for (int k = 0; k < K; k++) {
                const int64_t e = load_index(p.logical_ids, r.logical_id_dtype, t * out + k);
                picks[k] = e >= 0 && e < r.experts ? (int)e : -1;
            }
        } else {
            choose_groups(&r, &w);
            choose(&r, &w, picks);
        }
        int32_t logical[2 * MOEJIT_MAX_TOPK];
        weigh(&r, &w, picks, logical, p.weights + t * out);
        write_row(&r, &p, t, logical);
        if (r.aux_stats) {
            const double lse = aux_scores(&r, w.x, q);
            if (r.aux_stats & MOEJIT_AUX_Z_LOSS) p.aux_lse[t] = (float)lse;
            const int64_t seq = (r.aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE)
                                    ? mj_aux_sequence_of(p.seq_offsets, r.seq_offset_dtype, p.num_seqs, t)
                                    : 0;
            if (balance && seq >= 0) {
                for (int e = 0; e < r.experts; e++) psum[seq * r.experts + e] += q[e];
                for (int k = 0; k < K; k++) p.aux_counts[seq * r.experts + picks[k]] += 1;
            }
        }
    }
    for (int64_t i = 0; balance && i < nseq * r.experts; i++)
        ((uint64_t *)p.aux_prob_sums)[i] += (uint64_t)llround(ldexp(psum[i], 32));
    free(psum), free(q);
    for (int64_t i = valid * out; i < p.num_tokens * out; i++) {
        store_index(p.ids, r.id_dtype, i, -1);
        p.weights[i] = 0.0f;
        if (r.replay == MOEJIT_REPLAY_RECORD) store_index(p.logical_ids, r.logical_id_dtype, i, -1);
    }
    work_free(&w);
    free(row);
    return MOEJIT_OK;
}

/* Gap between the worst chosen and the best unchosen value (ranked as the selection ranks), relative
 * to `scale` — the magnitude of the operands that formed the values, so that a bias cancelling a
 * score does not make an ordinary gap look tiny. */
static double boundary_gap(const float *v, const unsigned char *allowed, int n, int k, double scale)
{
    unsigned char *left = malloc((size_t)n);
    memcpy(left, allowed, (size_t)n);
    float last = 0.0f;
    for (int i = 0; i < k; i++) {
        const int b = argmax(v, left, n);
        last = v[b];
        left[b] = 0;
    }
    const int next = argmax(v, left, n);
    free(left);
    if (next < 0) return INFINITY;
    if (isnan(last) || isnan(v[next])) return isnan(last) && isnan(v[next]) ? 0.0 : INFINITY;
    if (isinf(last) && last == v[next]) return 0.0; /* an exact tie, broken by index on both sides */
    return ((double)last - (double)v[next]) / fmax(scale, fmax(fabs((double)last), 1e-30));
}

double mj_route_row_margin(const mj_route_shape *r, const float *logits, const float *bias)
{
    row_work w;
    if (!work_alloc(&w, r->experts)) {
        work_free(&w);
        return 0.0;
    }
    row_values(r, logits, bias, &w);
    double bias_scale = 0.0;
    for (int e = 0; r->has_bias && e < r->experts; e++) bias_scale = fmax(bias_scale, fabs((double)bias[e]));
    double margin = INFINITY;
    if (r->groups > 1) {
        choose_groups(r, &w); /* fills gscore */
        unsigned char *all = malloc((size_t)r->groups);
        memset(all, 1, (size_t)r->groups);
        margin = boundary_gap(w.gscore, all, r->groups, r->topk_groups, 2 * bias_scale);
        free(all);
    } else {
        memset(w.allowed, 1, (size_t)r->experts);
    }
    const double expert_gap = boundary_gap(w.sel, w.allowed, r->experts, r->topk, bias_scale);
    work_free(&w);
    return fmin(margin, expert_gap);
}
