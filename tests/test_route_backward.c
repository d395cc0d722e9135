/* route_backward's C reference, the definition the GPU kernels are checked against: the derivative
 * of route's weights checked by finite differences of the forward in double in every scoring mode
 * and option, hand-checked rows (non-finite logits, padded rows, repeated ids), the id types,
 * spec and argument errors, names and source. No GPU. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/numeric.h"
#include "ops/route/route.h"
#include "support.h"

/* ---- route's forward in double, with the routed ids given ------------------------------------------
 * Written from moejit.h (route steps 0-7) independently of both references: what the gradient is
 * the derivative of. w gets the K+S weights of one row. */
static void forward_double(const moejit_route_spec *s, const double *x, const int64_t *ids, double *w)
{
    const int E = s->num_experts, K = s->topk, S = s->shared_slots;
    const double cap = s->softcap, F = s->routed_scaling_factor == 0.0f ? 1.0 : s->routed_scaling_factor;
    double f[64], p[64];
    for (int e = 0; e < E; e++) {
        const double c = cap > 0 ? cap * tanh(x[e] / cap) : x[e];
        f[e] = isnan(c) ? -INFINITY : fmin(fmax(c, -(double)FLT_MAX), (double)FLT_MAX);
    }
    int valid[64];
    for (int k = 0; k < K; k++) valid[k] = ids[k] >= 0 && ids[k] < E;
    if (s->score == MOEJIT_SCORE_SOFTMAX) {
        /* over the row, or over the K chosen (score_after_topk) */
        double m = -INFINITY, z = 0.0;
        if (s->score_after_topk) {
            for (int k = 0; k < K; k++)
                if (valid[k]) m = fmax(m, f[ids[k]]);
            if (m == -INFINITY) m = 0.0;
            for (int k = 0; k < K; k++) z += valid[k] ? exp(f[ids[k]] - m) : 0.0;
        } else {
            for (int e = 0; e < E; e++) m = fmax(m, f[e]);
            if (m == -INFINITY) m = 0.0;
            for (int e = 0; e < E; e++) z += exp(f[e] - m);
        }
        for (int k = 0; k < K; k++) p[k] = valid[k] && z > 0 ? exp(f[ids[k]] - m) / z : 0.0;
    } else {
        for (int k = 0; k < K; k++) {
            const double v = valid[k] ? f[ids[k]] : -INFINITY;
            p[k] = s->score == MOEJIT_SCORE_SIGMOID ? 1.0 / (1.0 + exp(-v)) : sqrt(v > 20 ? v : log1p(exp(v)));
        }
    }
    double routed = 0.0;
    for (int k = 0; k < K; k++) routed += p[k];
    if (s->renormalize && routed > 0) {
        for (int k = 0; k < K; k++) p[k] /= routed;
        routed = 1.0;
    }
    for (int k = 0; k < K; k++) w[k] = p[k];
    for (int j = 0; j < S; j++) w[K + j] = routed / F;
    for (int j = 0; j < K + S; j++) w[j] = fmin(s->scale_output ? w[j] * F : w[j], (double)FLT_MAX);
}

/* L = Σ_j gw_j·w_j of one row */
static double loss(const moejit_route_spec *s, const double *x, const int64_t *ids, const float *gw)
{
    double w[128], l = 0.0;
    forward_double(s, x, ids, w);
    for (int j = 0; j < s->topk + s->shared_slots; j++) l += (double)gw[j] * w[j];
    return l;
}

/* dL/dx_e by central differences with one Richardson step (error O(h^4)). */
static double finite_difference(const moejit_route_spec *s, double *x, int e, const int64_t *ids, const float *gw)
{
    const double h = 1e-3, x0 = x[e];
    double d[2];
    for (int i = 0; i < 2; i++) {
        const double step = i ? h / 2 : h;
        x[e] = x0 + step;
        const double up = loss(s, x, ids, gw);
        x[e] = x0 - step;
        const double down = loss(s, x, ids, gw);
        d[i] = (up - down) / (2 * step);
    }
    x[e] = x0;
    return (4 * d[1] - d[0]) / 3;
}

/* ---- inputs ------------------------------------------------------------------------------------------- */

typedef struct batch {
    moejit_route_spec spec;
    int T, W;
    void *logits;   /* [T, E] of spec.dtype */
    float *bias;
    int32_t *ids;   /* [T, W] as route wrote them, then mutated */
    float *gw;      /* [T, W] */
    float *grad;    /* [T, E]: the reference */
} batch;

static void store_logit(void *row, int dtype, int e, float v)
{
    if (dtype == MOEJIT_DTYPE_F32) ((float *)row)[e] = v;
    else ((uint16_t *)row)[e] = dtype == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
}

/* T rows of fresh logits (normal, a few past 20 for sqrt_softplus's linear branch, never within
 * 0.01 of 20), ids from route's reference, then in some rows a dropped slot (-1), an id out of
 * range, a repeated id, or a padded row (all -1); grad_weights normal, never zero. */
static void make_batch(mjt_rng *rng, const moejit_route_spec *spec, int T, batch *b)
{
    memset(b, 0, sizeof *b);
    b->spec = *spec;
    const int E = spec->num_experts, K = spec->topk, W = K + spec->shared_slots;
    const size_t elem = spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    b->T = T, b->W = W;
    b->logits = malloc((size_t)T * E * elem);
    b->bias = malloc(sizeof(float) * (size_t)E);
    b->ids = malloc(sizeof(int32_t) * (size_t)T * W);
    b->gw = malloc(sizeof(float) * (size_t)T * W);
    b->grad = malloc(sizeof(float) * (size_t)T * E);
    float *w = malloc(sizeof(float) * (size_t)T * W);
    for (int e = 0; e < E; e++) b->bias[e] = (float)(0.1 * mjt_normal(rng));
    for (int t = 0; t < T; t++)
        for (int e = 0; e < E; e++) {
            double v = 1.5 * mjt_normal(rng);
            if (spec->score == MOEJIT_SCORE_SQRT_SOFTPLUS && mjt_next(rng) % 8 == 0) v = 22 + 4 * mjt_uniform(rng);
            store_logit((char *)b->logits + (size_t)t * E * elem, spec->dtype, e, (float)v);
        }
    const moejit_route_args a = {.logits = b->logits, .bias = b->bias, .ids = b->ids, .weights = w, .num_tokens = T};
    if (moejit_route_reference(spec, &a) != MOEJIT_OK) fail_msg("route reference: %s", moejit_last_error(NULL));
    for (int i = 0; i < T * W; i++) {
        double g = mjt_normal(rng);
        if (fabs(g) < 1e-3) g = 0.5;
        b->gw[i] = (float)g;
    }
    for (int t = 1; t < T; t++) { /* row 0 stays as route wrote it */
        int32_t *id = b->ids + t * W;
        switch (t % 6) {
        case 1: id[mjt_next(rng) % (uint64_t)K] = -1; break;
        case 2: id[mjt_next(rng) % (uint64_t)K] = E + (int)(mjt_next(rng) % 5); break;
        case 3:
            if (K > 1) id[K - 1] = id[0];
            break;
        case 4:
            if (t == 4)
                for (int j = 0; j < W; j++) id[j] = -1;
            break;
        default: break;
        }
    }
    free(w);
}

static void free_batch(batch *b) { free(b->logits), free(b->bias), free(b->ids), free(b->gw), free(b->grad); }

static moejit_route_backward_args batch_args(batch *b)
{
    return (moejit_route_backward_args){.logits = b->logits, .ids = b->ids, .grad_weights = b->gw,
                                        .grad_logits = b->grad, .num_tokens = b->T};
}

static void run_reference(batch *b)
{
    moejit_route_backward_spec s = {.route = b->spec};
    moejit_route_backward_args a = batch_args(b);
    for (int i = 0; i < b->T * b->spec.num_experts; i++) b->grad[i] = NAN; /* every element must be written */
    const moejit_status st = moejit_route_backward_reference(&s, &a);
    if (st != MOEJIT_OK) fail_msg("route_backward reference: %s: %s", moejit_status_str(st), moejit_last_error(NULL));
}

/* The largest error of b->grad against the finite differences of `spec`'s forward, in units of
 * the tolerance: 1e-6 relative, plus 1e-7 of the row's Σ|grad_weights|·factor (the size of the
 * terms a gradient is made of). <= 1 passes. Reports the worst element in `where`. */
static double fd_error(const moejit_route_spec *spec, const batch *b, char *where, size_t cap)
{
    const int E = spec->num_experts, K = spec->topk, W = b->W;
    const size_t elem = spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    const double F = spec->scale_output && spec->routed_scaling_factor > 0 ? spec->routed_scaling_factor : 1.0;
    double worst = 0.0;
    for (int t = 0; t < b->T; t++) {
        double x[64];
        int64_t ids[64];
        for (int e = 0; e < E; e++) x[e] = mj_load_as_f32((const char *)b->logits + (size_t)t * E * elem, spec->dtype, e);
        for (int k = 0; k < K; k++) ids[k] = b->ids[t * W + k];
        const float *gw = b->gw + t * W;
        double scale = 0.0;
        for (int j = 0; j < W; j++) scale += fabs((double)gw[j]) * F;
        for (int e = 0; e < E; e++) {
            const double fd = finite_difference(spec, x, e, ids, gw), g = b->grad[t * E + e];
            const double err = fabs(g - fd) / (1e-6 * fabs(fd) + 1e-7 * scale);
            if (!(err <= worst)) {
                worst = isnan(err) ? INFINITY : err;
                snprintf(where, cap, "row %d expert %d: gradient %.9g, finite differences %.9g", t, e, g, fd);
            }
        }
    }
    return worst;
}

/* The forward above is route's: its weights match route's reference (f32) on unmutated rows. */
static void check_forward_matches_route(const batch *b)
{
    const moejit_route_spec *s = &b->spec;
    const int E = s->num_experts, W = b->W;
    const size_t elem = s->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    int32_t ids[64];
    float w[128];
    const moejit_route_args a = {.logits = b->logits, .bias = b->bias, .ids = ids, .weights = w, .num_tokens = 1};
    assert_int_equal(moejit_route_reference(s, &a), MOEJIT_OK);
    double x[64], wd[128];
    int64_t id64[64];
    for (int e = 0; e < E; e++) x[e] = mj_load_as_f32(b->logits, s->dtype, e);
    for (int k = 0; k < s->topk; k++) id64[k] = ids[k];
    forward_double(s, x, id64, wd);
    for (int j = 0; j < W; j++)
        if (!(fabs(wd[j] - w[j]) <= 1e-6 * fabs(wd[j]) + 1e-30))
            fail_msg("the test's forward: weight %d = %.9g, route's reference %.9g", j, wd[j], (double)w[j]);
    (void)elem;
}

/* Every score × score_after_topk × soft cap × renormalisation × scale_output × shared slots ×
 * (grouped with a bias, or not), logits f32/bf16/f16 in turn: the reference is the derivative of
 * the forward, to 1e-6. */
static void test_finite_differences(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    int n = 0;
    for (int v = 0; v < 3 * 2 * 2 * 2 * 2 * 2 * 2; v++, n++) {
        const int score = v % 3, after = v / 3 % 2, cap = v / 6 % 2, renorm = v / 12 % 2, scale = v / 24 % 2,
                  shared = v / 48 % 2, grouped = v / 96 % 2;
        moejit_route_spec s = {.num_experts = 16, .topk = 4, .score = (moejit_score)score, .dtype = (moejit_dtype)(v / 5 % 3),
                               .score_after_topk = after, .softcap = cap ? 4.0f : 0.0f, .renormalize = renorm,
                               .scale_output = scale, .routed_scaling_factor = 2.5f, .shared_slots = shared ? 2 : 0};
        if (grouped) {
            s.num_groups = 4, s.topk_groups = 2, s.has_bias = 1;
            s.group_score = (moejit_group_score)(v / 7 % 2);
        }
        batch b;
        make_batch(&rng, &s, 12, &b);
        check_forward_matches_route(&b);
        run_reference(&b);
        char where[256] = "";
        const double err = fd_error(&s, &b, where, sizeof where);
        if (!(err <= 1.0))
            fail_msg("score %d after %d cap %d renorm %d scale %d shared %d grouped %d: %s (%.3g× the tolerance)",
                     score, after, cap, renorm, scale, shared, grouped, where, err);
        free_batch(&b);
    }
    assert_int_equal(n, 192);
}

/* The check has teeth: gradients that miss one part of the chain rule fail it. */
static void test_finite_differences_catch_mistakes(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int score = 0; score < 3; score++) {
        const moejit_route_spec s = {.num_experts = 16, .topk = 4, .score = (moejit_score)score, .softcap = 4.0f,
                                     .scale_output = 1, .routed_scaling_factor = 2.5f, .shared_slots = 1};
        batch b;
        make_batch(&rng, &s, 8, &b);
        char where[256];
        run_reference(&b);
        assert_true(fd_error(&s, &b, where, sizeof where) <= 1.0);
        /* another scaling factor, renormalisation, no soft cap: each a different derivative */
        moejit_route_spec wrong[3] = {s, s, s};
        wrong[0].routed_scaling_factor = 2.0f;
        wrong[1].renormalize = 1;
        wrong[2].softcap = 0.0f;
        for (int i = 0; i < 3; i++) {
            b.spec = wrong[i];
            run_reference(&b);
            if (fd_error(&s, &b, where, sizeof where) <= 1.0) fail_msg("score %d: mistake %d passed", score, i);
        }
        /* the shared slot's gradient left out */
        b.spec = s;
        for (int t = 0; t < b.T; t++) b.gw[t * b.W + s.topk] = 0.0f;
        run_reference(&b);
        for (int t = 0; t < b.T; t++) b.gw[t * b.W + s.topk] = 1.0f; /* what the finite differences see */
        if (fd_error(&s, &b, where, sizeof where) <= 1.0) fail_msg("score %d: no shared-slot gradient passed", score);
        free_batch(&b);
    }
    /* softmax over the row reaches the experts that were not chosen: zeroing them is caught */
    const moejit_route_spec s = {.num_experts = 16, .topk = 4};
    batch b;
    make_batch(&rng, &s, 8, &b);
    run_reference(&b);
    for (int t = 0; t < b.T; t++)
        for (int e = 0; e < 16; e++) {
            int chosen = 0;
            for (int k = 0; k < 4; k++) chosen |= b.ids[t * b.W + k] == e;
            if (!chosen) b.grad[t * 16 + e] = 0.0f;
        }
    char where[256];
    assert_true(fd_error(&s, &b, where, sizeof where) > 1.0);
    free_batch(&b);
}

/* ---- hand-checked rows ------------------------------------------------------------------------------ */

static void backward_rows(const moejit_route_spec *route, const float *logits, const int32_t *ids, const float *gw,
                          int T, float *grad)
{
    const moejit_route_backward_spec s = {.route = *route};
    const moejit_route_backward_args a = {.logits = logits, .ids = ids, .grad_weights = gw, .grad_logits = grad,
                                          .num_tokens = T};
    for (int i = 0; i < T * route->num_experts; i++) grad[i] = NAN;
    const moejit_status st = moejit_route_backward_reference(&s, &a);
    if (st != MOEJIT_OK) fail_msg("moejit_route_backward_reference: %s: %s", moejit_status_str(st), moejit_last_error(NULL));
}

/* Non-finite logits as the forward reads them: NaN is -inf (gradient 0), ±inf is ±FLT_MAX (the
 * derivative there: finite); soft-capped infinities get 0. */
static void test_non_finite_logits(void **state)
{
    (void)state;
    float grad[8];
    /* two +inf share a softmax row: s = (0.5, 0, 0.5, 0); dp = (1, 0); Σ dp·s = 0.5 */
    moejit_route_spec s = {.num_experts = 4, .topk = 2};
    const float two_inf[4] = {INFINITY, 0.0f, INFINITY, -1.0f};
    const int32_t ids[2] = {0, 2};
    const float gw[2] = {1.0f, 0.0f};
    backward_rows(&s, two_inf, ids, gw, 1, grad);
    assert_float_equal(grad[0], 0.25, 0);
    assert_float_equal(grad[2], -0.25, 0);
    assert_float_equal(grad[1], 0.0, 0);
    assert_float_equal(grad[3], 0.0, 0);
    /* a NaN expert weighs 0 and gets 0; a row of nothing but NaN gets zeros */
    const float one_nan[4] = {NAN, 0.5f, 1.0f, -1.0f}, all_nan[4] = {NAN, NAN, NAN, NAN};
    const int32_t nan_ids[2] = {2, 0}, first_ids[2] = {0, 1};
    for (int score = 0; score < 3; score++)
        for (int after = 0; after < 2; after++) {
            s = (moejit_route_spec){.num_experts = 4, .topk = 2, .score = (moejit_score)score, .score_after_topk = after,
                                    .renormalize = 1};
            backward_rows(&s, one_nan, nan_ids, gw, 1, grad);
            assert_float_equal(grad[0], 0.0, 0);
            for (int e = 0; e < 4; e++) assert_true(isfinite(grad[e]));
            backward_rows(&s, all_nan, first_ids, gw, 1, grad);
            for (int e = 0; e < 4; e++) assert_float_equal(grad[e], 0.0, 0);
        }
    /* sigmoid at +inf (FLT_MAX) is flat; sqrt(softplus) there has slope 1/(2·sqrt(FLT_MAX)) */
    const float inf_row[2] = {INFINITY, -INFINITY};
    const int32_t both[2] = {0, 1};
    const float ones[2] = {1.0f, 1.0f};
    s = (moejit_route_spec){.num_experts = 2, .topk = 2, .score = MOEJIT_SCORE_SIGMOID};
    backward_rows(&s, inf_row, both, ones, 1, grad);
    assert_float_equal(grad[0], 0.0, 0);
    assert_float_equal(grad[1], 0.0, 0);
    s.score = MOEJIT_SCORE_SQRT_SOFTPLUS;
    backward_rows(&s, inf_row, both, ones, 1, grad);
    assert_float_equal(grad[0], (float)(0.5 / sqrt((double)FLT_MAX)), 0);
    assert_float_equal(grad[1], 0.0, 0);
    /* under a soft cap, ±inf saturates the tanh: no gradient */
    s.softcap = 10.0f;
    backward_rows(&s, inf_row, both, ones, 1, grad);
    assert_float_equal(grad[0], 0.0, 0);
    assert_float_equal(grad[1], 0.0, 0);
}

/* Renormalising scores too small for their sum's reciprocal (sigmoid of −720, softmax 720 below
 * the row's best) still gives the derivative, finite: w·(a − Σ a·w) for the chosen, 0 for the
 * others. */
static void test_tiny_renormalised_scores(void **state)
{
    (void)state;
    float grad[3];
    const int32_t ids[2] = {1, 2};
    const float gw[2] = {1.0f, 0.0f};
    const double w1 = 1.0 / (1.0 + exp(-5.0)), w2 = 1.0 - w1; /* e^-720 : e^-725, renormalised */
    const float sig[3] = {0.0f, -720.0f, -725.0f}, soft[3] = {0.0f, -720.0f, -725.0f};
    moejit_route_spec s = {.num_experts = 3, .topk = 2, .score = MOEJIT_SCORE_SIGMOID, .renormalize = 1};
    backward_rows(&s, sig, ids, gw, 1, grad);
    assert_float_equal(grad[1], (1 - w1) * w1, 1e-7);
    assert_float_equal(grad[2], -w1 * w2, 1e-7);
    assert_float_equal(grad[0], 0.0, 0);
    s.score = MOEJIT_SCORE_SOFTMAX;
    backward_rows(&s, soft, ids, gw, 1, grad);
    assert_float_equal(grad[1], (1 - w1) * w1, 1e-7);
    assert_float_equal(grad[2], -w1 * w2, 1e-7);
    assert_float_equal(grad[0], 0.0, 1e-12);
}

/* Ids outside [0, E) get nothing and add nothing; a padded row is all zeros; a repeated id sums
 * its slots; the elementwise scores give 0 to the experts not chosen. */
static void test_ids(void **state)
{
    (void)state;
    const float x[6] = {0.3f, -0.2f, 1.1f, 0.7f, -1.5f, 0.1f};
    float grad[6], one[6];
    moejit_route_spec s = {.num_experts = 6, .topk = 2, .score = MOEJIT_SCORE_SIGMOID};
    const int32_t padded[2] = {-1, -1}, dropped[2] = {2, -1}, alone[2] = {2, 7}, twice[2] = {2, 2};
    const float gw[2] = {0.75f, -0.5f};
    backward_rows(&s, x, padded, gw, 1, grad);
    for (int e = 0; e < 6; e++) assert_float_equal(grad[e], 0.0, 0);
    backward_rows(&s, x, dropped, gw, 1, one);
    backward_rows(&s, x, alone, gw, 1, grad);
    assert_memory_equal(one, grad, sizeof grad); /* -1 and 7 (>= E) are the same: no expert */
    const double sg = 1.0 / (1.0 + exp(-(double)x[2]));
    assert_float_equal(one[2], 0.75 * sg * (1 - sg), 1e-7);
    for (int e = 0; e < 6; e++)
        if (e != 2) assert_float_equal(one[e], 0.0, 0);
    backward_rows(&s, x, twice, gw, 1, grad);
    assert_float_equal(grad[2], (0.75 - 0.5) * sg * (1 - sg), 1e-7);
    /* softmax over the row: a padded row is zeros too, and every other row reaches every expert */
    s.score = MOEJIT_SCORE_SOFTMAX;
    backward_rows(&s, x, padded, gw, 1, grad);
    for (int e = 0; e < 6; e++) assert_float_equal(grad[e], 0.0, 0);
    backward_rows(&s, x, dropped, gw, 1, grad);
    for (int e = 0; e < 6; e++) assert_true(grad[e] != 0.0f);
}

/* ids are read in route's id_dtype, or with placement in the logical ids' type; the gradient is
 * the same whatever the type. */
static void test_id_types(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    const moejit_route_spec base = {.num_experts = 16, .topk = 4, .score = MOEJIT_SCORE_SIGMOID, .renormalize = 1,
                                    .shared_slots = 1, .routed_scaling_factor = 2.0f};
    batch b;
    make_batch(&rng, &base, 6, &b);
    run_reference(&b);
    const int n = b.T * b.W;
    int64_t *i64 = malloc(sizeof(int64_t) * (size_t)n);
    int16_t *i16 = malloc(sizeof(int16_t) * (size_t)n);
    for (int i = 0; i < n; i++) i64[i] = b.ids[i], i16[i] = (int16_t)b.ids[i];
    float *grad = malloc(sizeof(float) * (size_t)b.T * 16);
    const struct {
        moejit_route_spec spec;
        const void *ids;
    } cases[] = {
        {{.id_dtype = MOEJIT_INDEX_INT64}, i64},
        {{.id_dtype = MOEJIT_INDEX_INT16}, i16},
        /* placement: route's ids are physical; the logical ones it recorded are read */
        {{.max_replicas = 2, .num_physical_experts = 40, .replay = MOEJIT_REPLAY_RECORD,
          .logical_id_dtype = MOEJIT_INDEX_INT64},
         i64},
        {{.max_replicas = 2, .num_physical_experts = 40, .replay = MOEJIT_REPLAY_GIVEN, .id_dtype = MOEJIT_INDEX_INT64},
         b.ids},
        /* padded batches and load counters change nothing */
        {{.padded = 1, .load_counter = MOEJIT_LOAD_INT64}, b.ids},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        moejit_route_backward_spec s = {.route = cases[c].spec};
        s.route.num_experts = base.num_experts, s.route.topk = base.topk, s.route.score = base.score;
        s.route.renormalize = base.renormalize, s.route.shared_slots = base.shared_slots;
        s.route.routed_scaling_factor = base.routed_scaling_factor;
        moejit_route_backward_args a = batch_args(&b);
        a.ids = cases[c].ids;
        a.grad_logits = grad;
        assert_int_equal(moejit_route_backward_reference(&s, &a), MOEJIT_OK);
        if (memcmp(grad, b.grad, sizeof(float) * (size_t)b.T * 16)) fail_msg("case %zu: another gradient", c);
    }
    free(i64), free(i16), free(grad);
    free_batch(&b);
}

/* ---- errors, names, source ----------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    float logits[8] = {0}, gw[2] = {0}, grad[8];
    int32_t ids[2] = {0, 1};
    moejit_route_backward_spec s = {.route = {.num_experts = 8, .topk = 2}};
    moejit_route_backward_args a = {.logits = logits, .ids = ids, .grad_weights = gw, .grad_logits = grad, .num_tokens = 1};
    assert_int_equal(moejit_route_backward_reference(&s, &a), MOEJIT_OK);
    /* spec: route's own checks name the field, then the backward's */
    mjt_expect_error(moejit_route_backward_reference(NULL, &a), MOEJIT_ERR_INVALID_ARGUMENT, "route_backward spec: spec is NULL");
    s.route.topk = 9;
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_INVALID_SPEC, "topk = 9 exceeds num_experts = 8");
    s.route.topk = 2, s.reserved[3] = 5;
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_UNSUPPORTED, "route_backward spec: reserved[3] = 0x5");
    s.reserved[3] = 0, s.route.max_replicas = 4, s.route.num_physical_experts = 12;
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_INVALID_SPEC, "route.max_replicas = 4");
    s.route.max_replicas = 0, s.route.num_physical_experts = 0;
    /* arguments */
    mjt_expect_error(moejit_route_backward_reference(&s, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "route_backward args: args is NULL");
    const moejit_route_backward_args good = a;
    a.num_tokens = -3;
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "num_tokens = -3 must be >= 0");
    a = good, a.row_stride = 7;
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                     "row_stride = 7 is smaller than num_experts = 8");
    a = good, a.ids = NULL;
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "route_backward args: ids is NULL");
    a = good, a.grad_logits = NULL;
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "grad_logits is NULL");
    a = good, a.grad_weights = (const float *)((const char *)gw + 1);
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT,
                     "grad_weights = 0x");
    a = good, a.reserved[5] = 1; /* the last word */
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_UNSUPPORTED, "route_backward args: reserved[5] = 0x1");
    a = good, a.num_tokens = INT64_MAX / 2;
    mjt_expect_error(moejit_route_backward_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "overflows");
    /* an empty batch needs no pointers */
    a = (moejit_route_backward_args){.num_tokens = 0};
    assert_int_equal(moejit_route_backward_reference(&s, &a), MOEJIT_OK);
    assert_string_equal(moejit_last_error(NULL), "");

    /* the launch checks the same, before compiling or launching anything */
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    a = good, a.grad_logits = NULL;
    mjt_expect_error(moejit_route_backward(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "grad_logits is NULL");
    s.route.score = (moejit_score)7;
    mjt_expect_error(moejit_route_backward(ctx, &s, &good, NULL), MOEJIT_ERR_INVALID_SPEC, "score = 7");
    s.route.score = MOEJIT_SCORE_SOFTMAX;
    mjt_expect_error(moejit_route_backward(NULL, &s, &good, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "ctx is NULL");
    a = (moejit_route_backward_args){.num_tokens = 0};
    assert_int_equal(moejit_route_backward(ctx, &s, &a, NULL), MOEJIT_OK); /* nothing to launch */
    mjt_expect_nothing_ran(ctx, dir);
    /* a descriptor validates the same way */
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE_BACKWARD, .route_backward = {.route = {.num_experts = 0, .topk = 1}}};
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "num_experts = 0 must be >= 1");
}

static void expect_name(const moejit_route_spec *route, const char *want)
{
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE_BACKWARD, .route_backward = {.route = *route}};
    char name[96];
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, want);
}

/* Names state what the gradient depends on: the selection's options (groups, bias) and the serving
 * options do not make another kernel, the ids' type does. */
static void test_names_and_source(void **state)
{
    (void)state;
    moejit_route_spec r;
    assert_int_equal(moejit_route_preset("deepseek-v3", &r), MOEJIT_OK);
    expect_name(&r, "moejit_route_backward_sigmoid_e256_k8_renorm_x2p5_bf16");
    r.num_groups = 0, r.topk_groups = 0, r.has_bias = 0, r.padded = 1, r.load_counter = MOEJIT_LOAD_INT32;
    expect_name(&r, "moejit_route_backward_sigmoid_e256_k8_renorm_x2p5_bf16");
    r.score_after_topk = 1; /* an elementwise score weighs score(logit) either way */
    expect_name(&r, "moejit_route_backward_sigmoid_e256_k8_renorm_x2p5_bf16");
    r.id_dtype = MOEJIT_INDEX_INT64;
    expect_name(&r, "moejit_route_backward_sigmoid_e256_k8_renorm_x2p5_ids64_bf16");
    r.max_replicas = 2, r.num_physical_experts = 300, r.replay = MOEJIT_REPLAY_RECORD;
    r.logical_id_dtype = MOEJIT_INDEX_INT16; /* with placement the logical ids are read */
    expect_name(&r, "moejit_route_backward_sigmoid_e256_k8_renorm_x2p5_ids16_bf16");
    assert_int_equal(moejit_route_preset("gpt-oss", &r), MOEJIT_OK);
    r.dtype = MOEJIT_DTYPE_F32;
    expect_name(&r, "moejit_route_backward_softmax_e128_k4_after_f32");
    r = (moejit_route_spec){.num_experts = 2048, .topk = 8, .softcap = 30.0f, .shared_slots = 1,
                            .routed_scaling_factor = 2.5f, .dtype = MOEJIT_DTYPE_F16};
    expect_name(&r, "moejit_route_backward_softmax_e2048_k8_cap30_x2p5u_s1_f16");

    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE_BACKWARD, .route_backward = {.route = {.num_experts = 384, .topk = 8,
                                                                                          .score = MOEJIT_SCORE_SIGMOID}}};
    char *src = NULL;
    size_t len = 0;
    assert_int_equal(moejit_source(NULL, &d, &src, &len), MOEJIT_OK);
    assert_int_equal(strlen(src), len);
    assert_non_null(strstr(src, "struct MoejitRouteBackwardCfg {"));
    assert_non_null(strstr(src, "static constexpr int kExperts = 384;"));
    assert_non_null(strstr(src, "extern \"C\" __global__ void __launch_bounds__(128) "
                                "moejit_route_backward_sigmoid_e384_k8_f32(const mj::RouteBackwardParams p)"));
    assert_null(strstr(src, "\n#include"));
    moejit_free(src);
    /* a route and its backward are different kernels */
    moejit_kernel_desc fwd = {.op = MOEJIT_OP_ROUTE, .route = d.route_backward.route};
    char a[96], b[96];
    assert_int_equal(moejit_kernel_name(&fwd, a, sizeof a), MOEJIT_OK);
    assert_int_equal(moejit_kernel_name(&d, b, sizeof b), MOEJIT_OK);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_finite_differences_catch_mistakes),
        cmocka_unit_test(test_non_finite_logits),
        cmocka_unit_test(test_tiny_renormalised_scores),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_id_types),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_names_and_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
