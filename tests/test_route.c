/* route's C reference, the definition the GPU kernels are checked against: hand-checked rows,
 * shared slots under output scaling, and finite weights for any input (NaN, ±inf, rows of
 * nothing else) in every scoring mode. No GPU. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

/* Route T rows of f32 logits [T, E] with the reference; ids and weights [T, K+S]. */
static void route_rows(const moejit_route_spec *s, const float *logits, int T, const float *bias, int32_t *ids,
                       float *w)
{
    const moejit_route_args a = {.logits = logits, .bias = bias, .ids = ids, .weights = w, .num_tokens = T};
    moejit_status st = moejit_route_reference(s, &a);
    if (st != MOEJIT_OK) fail_msg("moejit_route_reference: %s: %s", moejit_status_str(st), moejit_last_error(NULL));
}

/* softmax over 4 experts, top-2, hand-computed. */
static void test_softmax_by_hand(void **state)
{
    (void)state;
    const float logits[4] = {1.0f, 3.0f, 2.0f, 3.0f};
    moejit_route_spec s = {.num_experts = 4, .topk = 2, .score = MOEJIT_SCORE_SOFTMAX};
    int32_t ids[2];
    float w[2];
    route_rows(&s, logits, 1, NULL, ids, w);
    const double z = exp(1.0) + 2 * exp(3.0) + exp(2.0);
    /* experts 1 and 3 tie: the lower index comes first */
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    assert_float_equal(w[0], exp(3.0) / z, 1e-7);
    assert_float_equal(w[1], exp(3.0) / z, 1e-7);
    s.renormalize = 1;
    route_rows(&s, logits, 1, NULL, ids, w);
    assert_float_equal(w[0], 0.5, 1e-7);
    assert_float_equal(w[1], 0.5, 1e-7);
}

/* sglang's fused shared experts: renormalise, then scale all K+S slots. With renormalisation the
 * shared expert's weight is 1.0 (it was 0.4 = 1 / 2.5 when only the routed slots were scaled). */
static void test_shared_slots_scaled(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    enum { E = 128, K = 4, S = 1, T = 64 };
    float logits[T * E], bias[E];
    for (int i = 0; i < T * E; i++) logits[i] = (float)mjt_normal(&rng);
    for (int e = 0; e < E; e++) bias[e] = (float)(0.1 * mjt_normal(&rng));
    for (int score = 0; score < 3; score++)
        for (int renorm = 0; renorm < 2; renorm++)
            for (int scale = 0; scale < 2; scale++) {
                moejit_route_spec s = {.num_experts = E, .topk = K, .score = (moejit_score)score, .num_groups = 4,
                                       .topk_groups = 2, .has_bias = 1, .renormalize = renorm, .scale_output = scale,
                                       .routed_scaling_factor = 2.5f, .shared_slots = S};
                int32_t ids[T * (K + S)];
                float w[T * (K + S)];
                route_rows(&s, logits, T, bias, ids, w);
                for (int t = 0; t < T; t++) {
                    const float *row = w + t * (K + S);
                    double routed = 0.0;
                    for (int k = 0; k < K; k++) routed += row[k];
                    assert_int_equal(ids[t * (K + S) + K], E);
                    /* The shared weight is routed / 2.5 before scaling and scaling multiplies every slot,
                     * so in the output it is always the routed slots' sum / 2.5. */
                    const double shared = routed / 2.5;
                    if (renorm) assert_float_equal(routed, scale ? 2.5 : 1.0, 1e-6);
                    if (renorm && scale) assert_float_equal(row[K], 1.0, 1e-7);
                    if (!(fabs(row[K] - shared) <= 1e-6 * shared))
                        fail_msg("score %d renorm %d scale %d row %d: shared weight %.9g, expected %.9g", score,
                                 renorm, scale, t, (double)row[K], shared);
                }
            }
}

/* The specials of a row: kind 0 one NaN, 1 one +inf, 2 one -inf, 3 all NaN, 4 all +inf, 5 all
 * -inf, 6 a mix of all three over half the row. */
static void fill_special_row(mjt_rng *rng, float *row, int E, int kind)
{
    for (int e = 0; e < E; e++) row[e] = (float)mjt_normal(rng);
    const float v[3] = {NAN, INFINITY, -INFINITY};
    if (kind < 3) row[mjt_next(rng) % (uint64_t)E] = v[kind];
    else if (kind < 6)
        for (int e = 0; e < E; e++) row[e] = v[kind - 3];
    else
        for (int e = 0; e < E; e += 2) row[e] = v[mjt_next(rng) % 3];
}

/* Every scoring mode, with and without score_after_topk, soft cap, bias, renormalisation,
 * scaling and shared slots: every weight finite; NaN logits never chosen while a number is
 * left and weigh 0 when they are; a row of nothing but NaN weighs 0; +inf is chosen first. */
static void test_finite_weights(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    enum { E = 16, K = 4, KINDS = 7 };
    float logits[KINDS * E];
    for (int kind = 0; kind < KINDS; kind++) fill_special_row(&rng, logits + kind * E, E, kind);
    for (int variant = 0; variant < 3 * 2 * 2 * 2 * 2; variant++) {
        const int score = variant % 3, after = (variant / 3) % 2, cap = (variant / 6) % 2, renorm = (variant / 12) % 2,
                  shared = (variant / 24) % 2;
        moejit_route_spec s = {.num_experts = E, .topk = K, .score = (moejit_score)score, .score_after_topk = after,
                               .softcap = cap ? 30.0f : 0.0f, .renormalize = renorm, .scale_output = 1,
                               .routed_scaling_factor = 2.5f, .shared_slots = shared};
        const int W = K + shared;
        int32_t ids[KINDS * (K + 1)];
        float w[KINDS * (K + 1)];
        route_rows(&s, logits, KINDS, NULL, ids, w);
        for (int kind = 0; kind < KINDS; kind++) {
            const float *x = logits + kind * E, *row = w + kind * W;
            const int32_t *id = ids + kind * W;
            char what[96];
            snprintf(what, sizeof what, "score %d after %d cap %d renorm %d shared %d, row kind %d", score, after, cap,
                     renorm, shared, kind);
            for (int j = 0; j < W; j++)
                if (!isfinite(row[j]) || row[j] < 0) fail_msg("%s: weight %d = %g", what, j, (double)row[j]);
            int numbers = 0;
            for (int e = 0; e < E; e++) numbers += !isnan(x[e]);
            for (int k = 0; k < K; k++) {
                if (isnan(x[id[k]]) && k < numbers) fail_msg("%s: NaN expert %d chosen at %d", what, id[k], k);
                if (isnan(x[id[k]]) && row[k] != 0.0f) fail_msg("%s: NaN expert weighs %g", what, (double)row[k]);
            }
            if (kind == 1) { /* the one +inf is chosen first */
                if (x[id[0]] != INFINITY) fail_msg("%s: first choice %d has logit %g", what, id[0], (double)x[id[0]]);
                /* softmax gives it all the weight, sigmoid 1.0 (before renormalisation); then 2.5× */
                if (!after && !cap && (score == MOEJIT_SCORE_SOFTMAX || (score == MOEJIT_SCORE_SIGMOID && !renorm)))
                    assert_float_equal(row[0], 2.5, 1e-6);
            }
            if (kind == 3) /* nothing but NaN: ids by index, zero weights */
                for (int j = 0; j < W; j++) {
                    if (j < K) assert_int_equal(id[j], j);
                    if (row[j] != 0.0f) fail_msg("%s: slot %d weighs %g", what, j, (double)row[j]);
                }
        }
    }
}

/* +inf is read as FLT_MAX: a row of two +inf under softmax splits evenly; sqrt_softplus of +inf
 * is sqrt(FLT_MAX). */
static void test_infinity_as_float_max(void **state)
{
    (void)state;
    float logits[4] = {INFINITY, 0.0f, INFINITY, -1.0f};
    moejit_route_spec s = {.num_experts = 4, .topk = 2, .score = MOEJIT_SCORE_SOFTMAX};
    int32_t ids[2];
    float w[2];
    route_rows(&s, logits, 1, NULL, ids, w);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 2);
    assert_float_equal(w[0], 0.5, 0);
    assert_float_equal(w[1], 0.5, 0);
    s.score = MOEJIT_SCORE_SQRT_SOFTPLUS;
    route_rows(&s, logits, 1, NULL, ids, w);
    assert_float_equal(w[0], (float)sqrt((double)FLT_MAX), 0);
    /* an extreme factor cannot make a weight inf */
    s.scale_output = 1, s.routed_scaling_factor = 1e30f;
    route_rows(&s, logits, 1, NULL, ids, w);
    assert_float_equal(w[0], FLT_MAX, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax_by_hand),
        cmocka_unit_test(test_shared_slots_scaled),
        cmocka_unit_test(test_finite_weights),
        cmocka_unit_test(test_infinity_as_float_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
