/* route's serving options in the C reference (moejit.h route steps 8-12), each checked against
 * the documented rule computed here independently from a plain run; their spec and argument
 * errors; their kernel names and generated source. No GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

enum { T = 23, E = 64, K = 4, S = 1, W = K + S, P = 80, R = 3 };

static const moejit_route_spec k_base = {.num_experts = E, .topk = K, .score = MOEJIT_SCORE_SIGMOID,
                                         .has_bias = 1, .renormalize = 1, .shared_slots = S,
                                         .routed_scaling_factor = 2.5f, .scale_output = 1};

static float g_logits[T * E], g_bias[E];
static int32_t g_ids[T * W]; /* the plain run */
static float g_w[T * W];

static void route(const moejit_route_spec *s, moejit_route_args a)
{
    a.logits = g_logits, a.bias = g_bias, a.num_tokens = T;
    const moejit_status st = moejit_route_reference(s, &a);
    if (st != MOEJIT_OK) fail_msg("moejit_route_reference: %s: %s", moejit_status_str(st), moejit_last_error(NULL));
}

static int setup(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int i = 0; i < T * E; i++) g_logits[i] = (float)mjt_normal(&rng);
    for (int e = 0; e < E; e++) g_bias[e] = (float)(0.1 * mjt_normal(&rng));
    route(&k_base, (moejit_route_args){.ids = g_ids, .weights = g_w});
    return 0;
}

static void test_padded_rows(void **state)
{
    (void)state;
    moejit_route_spec s = k_base;
    s.padded = 1;
    const int32_t counts[] = {T, 0, T + 9, 7, -3};
    for (int c = 0; c < 5; c++) {
        int32_t ids[T * W];
        float w[T * W];
        memset(ids, 0x5a, sizeof ids), memset(w, 0x5a, sizeof w);
        route(&s, (moejit_route_args){.ids = ids, .weights = w, .num_valid = &counts[c]});
        const int valid = counts[c] < 0 ? 0 : counts[c] > T ? T : counts[c];
        for (int i = 0; i < T * W; i++) {
            if (i < valid * W) {
                assert_int_equal(ids[i], g_ids[i]);
                assert_memory_equal(&w[i], &g_w[i], 4);
            } else {
                assert_int_equal(ids[i], -1);
                assert_true(w[i] == 0.0f);
            }
        }
    }
}

static void test_placement_and_load(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    int32_t map[E * R], replicas[E];
    for (int e = 0; e < E; e++) replicas[e] = (int32_t)(mjt_next(&rng) % (R + 3)) - 1; /* -1 .. R+1: clamped */
    for (int i = 0; i < E * R; i++) map[i] = i % 17 == 3 ? -1 : i % 19 == 4 ? P : (int32_t)(mjt_next(&rng) % P);
    moejit_route_spec s = k_base;
    s.max_replicas = R, s.num_physical_experts = P, s.load_counter = MOEJIT_LOAD_INT64;
    s.id_dtype = MOEJIT_INDEX_INT64;
    int64_t ids[T * W], load[P];
    float w[T * W];
    for (int e = 0; e < P; e++) load[e] = 1000 + e; /* added to */
    route(&s, (moejit_route_args){.ids = ids, .weights = w, .logical_to_physical = map, .replica_count = replicas,
                                  .expert_load = load});
    int64_t want_load[P];
    for (int e = 0; e < P; e++) want_load[e] = 1000 + e;
    for (int t = 0; t < T; t++)
        for (int j = 0; j < W; j++) {
            const int i = t * W + j;
            assert_memory_equal(&w[i], &g_w[i], 4); /* placement moves no weight */
            if (j >= K) {
                assert_int_equal(ids[i], P + (j - K)); /* shared slots follow the physical experts */
                continue;
            }
            const int e = g_ids[i];
            const int c = replicas[e] < 1 ? 1 : replicas[e] > R ? R : replicas[e];
            const int32_t ph = map[e * R + (t * K + j) % c];
            const int64_t want = ph >= 0 && ph < P ? ph : -1;
            if (ids[i] != want) fail_msg("row %d slot %d: physical id %lld, expected %lld", t, j, (long long)ids[i], (long long)want);
            if (want >= 0) want_load[want]++;
        }
    assert_memory_equal(load, want_load, sizeof load);
}

static void test_replay(void **state)
{
    (void)state;
    /* record: the logical ids, in the type asked for */
    moejit_route_spec rec = k_base;
    rec.replay = MOEJIT_REPLAY_RECORD, rec.logical_id_dtype = MOEJIT_INDEX_INT16, rec.id_dtype = MOEJIT_INDEX_INT16;
    int16_t logical[T * W], ids16[T * W];
    float w[T * W];
    route(&rec, (moejit_route_args){.ids = ids16, .weights = w, .logical_ids = logical});
    for (int i = 0; i < T * W; i++) {
        assert_int_equal(logical[i], g_ids[i]);
        assert_int_equal(ids16[i], g_ids[i]);
    }
    /* given: the same ids weigh the same, bit for bit, in every scoring mode */
    for (int mode = 0; mode < 6; mode++) {
        moejit_route_spec s = k_base;
        s.score = (moejit_score)(mode % 3), s.score_after_topk = mode >= 3;
        int32_t chosen[T * W], given_ids[T * W], again[T * W];
        float w1[T * W], w2[T * W];
        route(&s, (moejit_route_args){.ids = chosen, .weights = w1});
        s.replay = MOEJIT_REPLAY_GIVEN;
        memcpy(given_ids, chosen, sizeof chosen);
        route(&s, (moejit_route_args){.ids = again, .weights = w2, .logical_ids = given_ids});
        assert_memory_equal(again, chosen, sizeof chosen);
        assert_memory_equal(w2, w1, sizeof w1);
        /* a given id outside [0, E) weighs nothing and is written as -1 */
        given_ids[1] = -1, given_ids[W + 2] = E, given_ids[2 * W] = 1 << 20;
        route(&s, (moejit_route_args){.ids = again, .weights = w2, .logical_ids = given_ids});
        assert_int_equal(again[1], -1);
        assert_int_equal(again[W + 2], -1);
        assert_int_equal(again[2 * W], -1);
        assert_true(w2[1] == 0.0f && w2[W + 2] == 0.0f && w2[2 * W] == 0.0f);
        for (int j = 0; j < K; j++) assert_true(isfinite(w2[j]) && w2[j] >= 0.0f);
        /* renormalised over what is left: the routed weights of row 0 still sum to the factor */
        double sum = 0.0;
        for (int j = 0; j < K; j++) sum += w2[j];
        assert_float_equal(sum, 2.5, 1e-5);
    }
}

static void test_spec_errors(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = k_base};
    d.route.id_dtype = (moejit_index_dtype)5;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "id_dtype = 5");
    d.route = k_base, d.route.max_replicas = 2;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "num_physical_experts = 0");
    d.route.max_replicas = -1;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "max_replicas = -1");
    d.route = k_base, d.route.num_physical_experts = 70;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "without placement");
    d.route = k_base, d.route.max_replicas = 2, d.route.num_physical_experts = 40000, d.route.id_dtype = MOEJIT_INDEX_INT16;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "id_dtype = int16 cannot hold id 40000");
    d.route = k_base, d.route.replay = (moejit_replay)3;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "replay = 3");
    d.route = k_base, d.route.load_counter = (moejit_load_counter)9;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "load_counter = 9");
    d.route = k_base, d.route.replay = MOEJIT_REPLAY_RECORD, d.route.logical_id_dtype = (moejit_index_dtype)4;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "logical_id_dtype = 4");

    /* each option's pointer is required, and aligned to its type */
    int32_t ids[T * W];
    float w[T * W];
    moejit_route_spec s = k_base;
    s.padded = 1;
    moejit_route_args a = {.logits = g_logits, .bias = g_bias, .ids = ids, .weights = w, .num_tokens = T};
    mjt_expect_error(moejit_route_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "num_valid (spec.padded = 1)");
    s = k_base, s.max_replicas = 2, s.num_physical_experts = P;
    mjt_expect_error(moejit_route_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "logical_to_physical");
    s = k_base, s.load_counter = MOEJIT_LOAD_INT32;
    mjt_expect_error(moejit_route_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "expert_load");
    s = k_base, s.replay = MOEJIT_REPLAY_GIVEN;
    mjt_expect_error(moejit_route_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "logical_ids");
    s = k_base, s.id_dtype = MOEJIT_INDEX_INT64;
    a.ids = (char *)ids + 4;
    mjt_expect_error(moejit_route_reference(&s, &a), MOEJIT_ERR_INVALID_ARGUMENT, "ids");
}

static void test_names_and_source(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = k_base};
    d.route.padded = 1, d.route.max_replicas = 4, d.route.num_physical_experts = 96;
    d.route.load_counter = MOEJIT_LOAD_INT64, d.route.replay = MOEJIT_REPLAY_GIVEN, d.route.id_dtype = MOEJIT_INDEX_INT64;
    char name[256];
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_non_null(strstr(name, "_pad_r4p96_load64_given_ids64"));
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&(moejit_config){.cache_mode = MOEJIT_CACHE_OFF}, &ctx), MOEJIT_OK);
    char *src;
    assert_int_equal(moejit_source(ctx, &d, &src, NULL), MOEJIT_OK);
    assert_non_null(strstr(src, "kPadded = true"));
    assert_non_null(strstr(src, "typedef long long IdT"));
    assert_non_null(strstr(src, "kMaxReplicas = 4"));
    assert_non_null(strstr(src, "kPhysicalExperts = 96"));
    moejit_free(src);
    /* without the options the kernel (its name and source) is today's */
    d.route = k_base;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_null(strstr(name, "_pad"));
    moejit_close(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_padded_rows),
        cmocka_unit_test(test_placement_and_load),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_names_and_source),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
