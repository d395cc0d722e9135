/* route_align without a GPU: validation (route's checks, then the block size), names and source,
 * the fused token limit and the size helpers, bad arguments launching nothing, and the reference:
 * route's reference, then align over E+S experts, the shared slots' rows aligned like any expert. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/align/align.h"
#include "support.h"

/* DeepSeek-V3's scoring without groups, one shared slot. */
static moejit_route_align_spec dsv3_like(void)
{
    return (moejit_route_align_spec){.route = {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID,
                                               .has_bias = 1, .renormalize = 1, .scale_output = 1,
                                               .routed_scaling_factor = 2.5f, .shared_slots = 1},
                                     .block_size = 64};
}

static void test_specs_and_names(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE_ALIGN, .route_align = dsv3_like()};
    assert_int_equal(moejit_validate(&d), MOEJIT_OK);
    char name[96];
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_route_align_sigmoid_e256_k8_bias_renorm_x2p5_s1_f32_b64");
    char *src;
    assert_int_equal(moejit_source(NULL, &d, &src, NULL), MOEJIT_OK);
    /* one module: the fused kernel, and route's and align's (over E+S = 257 experts) for the fallback */
    static const char *const suffixes[] = {"_fused(", "_route(", "_onepass(", "_count(", "_scan(", "_scatter("};
    for (int i = 0; i < 6; i++) {
        char entry[160];
        snprintf(entry, sizeof entry, "%s%s", name, suffixes[i]);
        if (!strstr(src, entry)) fail_msg("no entry %s", entry);
    }
    assert_non_null(strstr(src, "struct MoejitAlignCfg {\n    static constexpr int kExperts = 257;"));
    assert_non_null(strstr(src, "struct MoejitFusedAlignCfg {\n    static constexpr int kExperts = 257;"));
    assert_null(strstr(src, "\n#include"));
    moejit_free(src);

    d.route_align.block_size = 100;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "route_align spec: block_size = 100");
    d.route_align.block_size = 2048;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC,
                     "route_align spec: block_size = 2048 must be a power of two in [1, 1024]");
    d.route_align.block_size = 0;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "route_align spec: block_size = 0");
    d.route_align.block_size = 1;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_route_align_sigmoid_e256_k8_bias_renorm_x2p5_s1_f32_b1");
    d.route_align.block_size = 1024;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_route_align_sigmoid_e256_k8_bias_renorm_x2p5_s1_f32_b1024");
    d.route_align = dsv3_like(), d.route_align.route.topk = 300;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "topk = 300 exceeds num_experts = 256");
    d.route_align = dsv3_like(), d.route_align.route.num_groups = 8, d.route_align.route.topk_groups = 4;
    assert_int_equal(moejit_validate(&d), MOEJIT_OK); /* grouped routing fuses like any other */
    mjt_expect_error(moejit_route_align(NULL, &d.route_align, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "ctx is NULL");
}

static void test_limits_and_sizes(void **state)
{
    (void)state;
    moejit_route_align_spec s = dsv3_like();
    int64_t fused, cap;
    size_t ws;
    /* a cluster of up to 8 blocks of 8 warps, a token a warp, whatever E up to 1024 */
    assert_int_equal(moejit_route_align_fused_tokens(&s, &fused), MOEJIT_OK);
    assert_int_equal(fused, 64);
    s.route.num_experts = 512, s.route.topk = 10;
    assert_int_equal(moejit_route_align_fused_tokens(&s, &fused), MOEJIT_OK);
    assert_int_equal(fused, 64);
    s = dsv3_like(), s.route.num_experts = 1024, s.route.topk = 64, s.route.shared_slots = 64;
    assert_int_equal(moejit_route_align_fused_tokens(&s, &fused), MOEJIT_OK);
    assert_int_equal(fused, 64); /* the widest rows: 8192 ids, 90 KB of shared memory */
    /* B sizes only the block labels (at most one an id): as many tokens at any B */
    for (int b = 1; b <= 1024; b *= 4) {
        int64_t at_b;
        s.block_size = b;
        assert_int_equal(moejit_route_align_fused_tokens(&s, &at_b), MOEJIT_OK);
        assert_int_equal(at_b, fused);
    }
    /* the fallback's boundaries: above 1024 experts a block routes a token; placement over so
     * many physical experts that align's histograms outgrow a block's shared memory */
    s = dsv3_like(), s.route.num_experts = 1025;
    assert_int_equal(moejit_route_align_fused_tokens(&s, &fused), MOEJIT_OK);
    assert_int_equal(fused, 0);
    s = dsv3_like(), s.route.max_replicas = 2, s.route.num_physical_experts = 7000;
    assert_int_equal(moejit_route_align_fused_tokens(&s, &fused), MOEJIT_OK);
    assert_int_equal(fused, 64);
    s.route.num_physical_experts = 8000; /* fewer tokens fit */
    assert_int_equal(moejit_route_align_fused_tokens(&s, &fused), MOEJIT_OK);
    assert_true(fused > 1 && fused < 64);
    s.route.num_physical_experts = 9000; /* not one */
    assert_int_equal(moejit_route_align_fused_tokens(&s, &fused), MOEJIT_OK);
    assert_int_equal(fused, 0);

    /* align's sizes over E+S experts and K+S ids a token, at every block size */
    for (int b = 1; b <= 1024; b *= 2) {
        s = dsv3_like(), s.block_size = b;
        const moejit_align_spec a = {.num_experts = 257, .block_size = b};
        /* every 125 tokens to 2000, then both sides of align's onepass limit (9 ids a token) */
        static const int64_t past[] = {MJ_ALIGN_ONEPASS_MAX_IDS / 9, MJ_ALIGN_ONEPASS_MAX_IDS / 9 + 1, 20000};
        for (int i = 0; i < 17 + 3; i++) {
            const int64_t T = i < 17 ? 125 * i : past[i - 17];
            int64_t want;
            assert_int_equal(moejit_route_align_capacity(&s, T, &cap), MOEJIT_OK);
            assert_int_equal(moejit_align_capacity(&a, T, 9, &want), MOEJIT_OK);
            assert_int_equal(cap, want);
            assert_int_equal(moejit_route_align_workspace_bytes(&s, T, &ws), MOEJIT_OK);
            size_t align_ws;
            assert_int_equal(moejit_align_workspace_bytes(&a, T, 9, &align_ws), MOEJIT_OK);
            assert_int_equal(ws, align_ws); /* the fused kernel needs none, nor align up to its limit */
            if (T <= 64) assert_int_equal(ws, 0);
            if ((align_ws > 0) != (T * 9 > MJ_ALIGN_ONEPASS_MAX_IDS))
                fail_msg("B=%d T=%lld: workspace %zu", b, (long long)T, align_ws);
        }
    }
    s = dsv3_like();
    mjt_expect_error(moejit_route_align_capacity(&s, -5, &cap), MOEJIT_ERR_INVALID_ARGUMENT, "num_tokens = -5");
}

static void test_bad_args(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    const moejit_route_align_spec s = dsv3_like();
    const moejit_route_align_args good = {
        .route = {.logits = (void *)0x10000, .bias = (float *)0x18000, .ids = (int32_t *)0x20000,
                  .weights = (float *)0x30000, .num_tokens = 4},
        .align = {.sorted_ids = (int32_t *)0x40000}};
    moejit_route_align_args a = good;
    a.route.ids = NULL;
    mjt_expect_error(moejit_route_align(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "route_align args: ids is NULL");
    a = good, a.route.weights = NULL;
    mjt_expect_error(moejit_route_align(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "weights is NULL");
    a = good, a.route.bias = NULL;
    mjt_expect_error(moejit_route_align(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "bias (spec.has_bias = 1) is NULL");
    a = good, a.route.row_stride = 100;
    mjt_expect_error(moejit_route_align(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "row_stride = 100 is smaller");
    a = good, a.align.block_expert = (int32_t *)0x50002;
    mjt_expect_error(moejit_route_align(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "block_expert = 0x50002");
    a = good, a.align.sorted_capacity = 100;
    mjt_expect_error(moejit_route_align(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "sorted_capacity = 100");
    a = good, a.route.num_tokens = 8000; /* the fallback past onepass: align's tiles need a workspace */
    mjt_expect_error(moejit_route_align(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "workspace_bytes = 0");
    a = good, a.route.num_tokens = -1;
    mjt_expect_error(moejit_route_align(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "num_tokens = -1");
    mjt_expect_error(moejit_route_align(ctx, &s, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "route_align args: args is NULL");
    /* nothing to do: an empty batch without align outputs */
    moejit_route_align_args empty = {.route = {.num_tokens = 0}};
    assert_int_equal(moejit_route_align(ctx, &s, &empty, NULL), MOEJIT_OK);
    mjt_expect_nothing_ran(ctx, dir);
}

/* The reference is route's, then align's on its ids: every shared slot's expert gets all T rows. */
static void check_reference(mjt_rng *rng, int B)
{
    moejit_route_align_spec s = dsv3_like();
    s.block_size = B;
    const int E = 256, S = 1, W = 9;
    const int64_t T = 37;
    float *bias;
    void *logits = mjt_route_inputs(rng, &s.route, T, E, &bias);
    int64_t cap;
    assert_int_equal(moejit_route_align_capacity(&s, T, &cap), MOEJIT_OK);
    int32_t *ids = malloc(4 * T * W), *ref_ids = malloc(4 * T * W);
    float *w = malloc(4 * T * W), *ref_w = malloc(4 * T * W);
    mjt_align_bufs got = mjt_align_bufs_new(E + S, B, cap, T * W, 0),
                   want = mjt_align_bufs_new(E + S, B, cap, T * W, 0);
    moejit_route_align_args a = {.route = {.logits = logits, .bias = bias, .ids = ids, .weights = w, .num_tokens = T},
                                 .align = mjt_align_select(&got, MJT_ALIGN_ALL, cap)};
    assert_int_equal(moejit_route_align_reference(&s, &a), MOEJIT_OK);
    const moejit_route_args ref_args = {.logits = logits, .bias = bias, .ids = ref_ids, .weights = ref_w,
                                        .num_tokens = T, .row_stride = E};
    assert_int_equal(moejit_route_reference(&s.route, &ref_args), MOEJIT_OK);
    assert_memory_equal(ids, ref_ids, 4 * T * W);
    assert_memory_equal(w, ref_w, 4 * T * W);
    const moejit_align_spec as = {.num_experts = E + S, .block_size = B};
    moejit_align_args aa = {.ids = ref_ids, .num_tokens = T, .topk = W, .out = mjt_align_select(&want, MJT_ALIGN_ALL, cap)};
    assert_int_equal(moejit_align_reference(&as, &aa), MOEJIT_OK);
    for (int i = 0; i < 6; i++) assert_memory_equal(got.buf[i], want.buf[i], 4 * got.len[i]);
    assert_int_equal(got.buf[0][E], T); /* counts[E]: the shared expert serves every token */
    assert_int_equal(got.buf[1][E + 1] - got.buf[1][E], (T + B - 1) / B * B); /* …in whole blocks */
    for (int64_t t = 0; t < T; t++) assert_int_equal(ids[t * W + 8], E);
    mjt_align_bufs_free(&got), mjt_align_bufs_free(&want);
    free(ids), free(ref_ids), free(w), free(ref_w), free(logits), free(bias);
}

static void test_reference(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int bs[] = {1, 4, 64, 1024};
    for (size_t b = 0; b < sizeof bs / sizeof bs[0]; b++) check_reference(&rng, bs[b]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_specs_and_names),
        cmocka_unit_test(test_limits_and_sizes),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
