/* GPU: every shape of the sweep routes fresh random batches and matches the C reference; a second
 * process finds the kernels in the disk cache. Every test skips without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/numeric.h"
#include "ops/route/route.h"
#include "support.h"

/* Under compute-sanitizer (MOEJIT_TEST_QUICK=1) batches stop here: every code path, fewer tokens. */
enum { QUICK_TOKENS = 64 };

static char g_cache[4096];
static moejit_ctx *g_ctx;

static int setup(void **state)
{
    (void)state;
    if (!mjt_gpu_available()) return 0;
    mjt_tmpdir(g_cache);
    moejit_config cfg = {.cache_dir = g_cache};
    return moejit_open(&cfg, &g_ctx) == MOEJIT_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (g_ctx) printf("[ info     ] largest relative weight error: %.3g\n", mjt_max_weight_error());
    moejit_close(g_ctx);
    if (g_cache[0]) mjt_rmtree(g_cache);
    return 0;
}

/* Route a batch of host logits on the GPU and compare with the reference. `offset` shifts the
 * logits by that many elements from a 256-byte aligned base (exercising the narrow-load paths).
 * Returns the GPU ids and weights (malloc'ed) when asked. */
static void route_logits_and_check(const moejit_route_spec *spec, void *logits, float *bias, int64_t T, int64_t stride,
                                   int offset, int32_t **ids_out, float **w_out)
{
    const int E = spec->num_experts, W = spec->topk + spec->shared_slots;
    const size_t elem = spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    const size_t in_bytes = (size_t)(T * stride) * elem, out_n = (size_t)(T * W);
    char *d_base = mjt_dev_alloc(in_bytes + 256);
    void *d_logits = d_base + (size_t)offset * elem;
    float *d_bias = spec->has_bias ? mjt_dev_alloc(sizeof(float) * (size_t)E) : NULL;
    int32_t *d_ids = mjt_dev_alloc(out_n * 4);
    float *d_w = mjt_dev_alloc(out_n * 4);
    mjt_h2d(d_logits, logits, in_bytes);
    if (bias) mjt_h2d(d_bias, bias, sizeof(float) * (size_t)E);
    mjt_dev_fill(d_ids, 0xff, out_n * 4); /* poison: id -1, weight NaN */
    mjt_dev_fill(d_w, 0xff, out_n * 4);

    moejit_route_args args = {.logits = d_logits, .bias = d_bias, .ids = d_ids, .weights = d_w, .num_tokens = T,
                              .row_stride = stride};
    moejit_status st = moejit_route(g_ctx, spec, &args, NULL);
    if (st != MOEJIT_OK) fail_msg("moejit_route: %s: %s", moejit_status_str(st), moejit_last_error(g_ctx));
    mjt_sync();
    int32_t *ids = malloc(out_n * 4), *ref_ids = malloc(out_n * 4);
    float *w = malloc(out_n * 4), *ref_w = malloc(out_n * 4);
    mjt_d2h(ids, d_ids, out_n * 4);
    mjt_d2h(w, d_w, out_n * 4);
    mjt_route_reference_parallel(spec, logits, T, stride, bias, ref_ids, ref_w);
    char what[160];
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = *spec};
    moejit_kernel_name(&d, what, sizeof what);
    snprintf(what + strlen(what), sizeof what - strlen(what), " T=%lld stride=%lld", (long long)T, (long long)stride);
    /* 1e-6 relative, as f32 math allows. A soft cap turns the few-ulp error of tanhf(x) into an
     * absolute error of x, i.e. a relative error of exp(x): up to ~|x|·4 ulp, so 1e-5 there. */
    mjt_check_route(spec, T, ref_ids, ref_w, ids, w, spec->softcap > 0 ? 1e-5 : 1e-6, what);
    free(ref_ids), free(ref_w);
    if (ids_out) *ids_out = ids, *w_out = w;
    else free(ids), free(w);
    mjt_dev_free(d_base), mjt_dev_free(d_bias), mjt_dev_free(d_ids), mjt_dev_free(d_w);
}

/* Fresh random inputs (no near-ties at any decision), routed and checked. */
static void route_and_check(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int64_t stride, int offset)
{
    T = mjt_quick_cap(T, QUICK_TOKENS);
    float *bias = NULL;
    void *logits = mjt_route_inputs(rng, spec, T, stride, &bias);
    route_logits_and_check(spec, logits, bias, T, stride, offset, NULL, NULL);
    free(logits), free(bias);
}

static void test_route_sweep(void **state)
{
    (void)state;
    if (!g_ctx) skip();
    static const int es[] = {1, 2, 8, 60, 64, 128, 160, 256, 384, 512, 1000, 1024};
    static const int ks[] = {1, 2, 4, 8, 10, 16, 32};
    static const int ts[] = {1, 7, 128, 4096};
    moejit_kernel_desc descs[420];
    int n = 0;
    for (int e = 0; e < 12; e++)
        for (int k = 0; k < 7; k++)
            for (int d = 0; d < 3 && ks[k] <= es[e]; d++)
                for (int c = 0; c < 2; c++) {
                    moejit_kernel_desc x = {.op = MOEJIT_OP_ROUTE};
                    x.route.num_experts = es[e], x.route.topk = ks[k];
                    x.route.dtype = (moejit_dtype)d, x.route.score = (moejit_score)c;
                    x.route.renormalize = (e + k + d) % 2;
                    descs[n++] = x;
                }
    assert_int_equal(n, 420);
    /* Compile everything first, in parallel (the launches below then hit the disk cache). */
    assert_int_equal(moejit_prewarm(g_ctx, descs, (size_t)n, NULL, NULL), MOEJIT_OK);
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < 4 && mjt_keep(i, 13); t++) {
            const int E = descs[i].route.num_experts;
            /* T=7: padded, odd row stride; T=128: an element-offset base; others: dense. */
            const int64_t stride = ts[t] == 7 ? E + 3 : E;
            route_and_check(&rng, &descs[i].route, ts[t], stride, ts[t] == 128 ? 1 : 0);
        }
    moejit_stats s;
    moejit_ctx_stats(g_ctx, &s);
    int kept = 0;
    for (int i = 0; i < n; i++) kept += mjt_keep(i, 13);
    assert_int_equal(s.kernels, kept);
    assert_int_equal(s.launches, 4 * kept);
}

/* Bias, shared slots, scaling, score-after-top-k on a few shapes. */
static void test_route_options(void **state)
{
    (void)state;
    if (!g_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    moejit_route_spec s = {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .dtype = MOEJIT_DTYPE_F32,
                           .has_bias = 1, .renormalize = 1, .scale_output = 1, .routed_scaling_factor = 2.827f};
    route_and_check(&rng, &s, 1000, 384, 0);
    s.shared_slots = 2;
    route_and_check(&rng, &s, 333, 384, 0);
    s = (moejit_route_spec){.num_experts = 128, .topk = 4, .score_after_topk = 1, .dtype = MOEJIT_DTYPE_BF16};
    route_and_check(&rng, &s, 500, 128, 0);
    /* Shared slots are scaled with the routed ones: renormalised and scaled, the shared weight is 1. */
    for (int score = 0; score < 3; score++) {
        s = (moejit_route_spec){.num_experts = 128, .topk = 4, .score = (moejit_score)score, .num_groups = 4,
                                .topk_groups = 2, .has_bias = 1, .renormalize = 1, .scale_output = 1,
                                .routed_scaling_factor = 2.5f, .shared_slots = 1};
        float *bias = NULL, *w;
        int32_t *ids;
        const int T = (int)mjt_quick_cap(200, QUICK_TOKENS);
        void *logits = mjt_route_inputs(&rng, &s, T, 128, &bias);
        route_logits_and_check(&s, logits, bias, T, 128, 0, &ids, &w);
        for (int t = 0; t < T; t++)
            if (ids[t * 5 + 4] != 128 || fabsf(w[t * 5 + 4] - 1.0f) > 1e-6f)
                fail_msg("score %d row %d: shared slot id %d weight %.9g, expected 128 and 1", score, t, ids[t * 5 + 4],
                         (double)w[t * 5 + 4]);
        free(ids), free(w), free(logits), free(bias);
    }
    s = (moejit_route_spec){.num_experts = 512, .topk = 10, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .renormalize = 1,
                            .dtype = MOEJIT_DTYPE_F16};
    route_and_check(&rng, &s, 300, 520, 0);
    s = (moejit_route_spec){.num_experts = 160, .topk = 8, .softcap = 30.0f, .renormalize = 1};
    route_and_check(&rng, &s, 200, 160, 0);
}

/* Every preset, f32 and bf16 logits, from one token to 16384. */
static void test_presets(void **state)
{
    (void)state;
    if (!g_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int ts[] = {1, 3, 128, 4096, 16384};
    const char *name;
    for (size_t p = 0; (name = moejit_route_preset_name(p)); p++)
        for (int d = 0; d < 2; d++) {
            moejit_route_spec s;
            assert_int_equal(moejit_route_preset(name, &s), MOEJIT_OK);
            s.dtype = d ? MOEJIT_DTYPE_BF16 : MOEJIT_DTYPE_F32;
            for (int t = 0; t < (mjt_quick() ? 3 : 5); t++) route_and_check(&rng, &s, ts[t], s.num_experts, 0);
        }
}

/* The issue-4 edge sweep (E up to 4096, groups, K = E, shared slots) at a few T. */
static void test_edge_sweep(void **state)
{
    (void)state;
    if (!g_ctx) skip();
    moejit_route_spec specs[400];
    const int n = mjt_route_edge_sweep(specs, 400);
    moejit_kernel_desc *descs = calloc((size_t)n, sizeof *descs);
    for (int i = 0; i < n; i++) descs[i] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE, .route = specs[i]};
    assert_int_equal(moejit_prewarm(g_ctx, descs, (size_t)n, NULL, NULL), MOEJIT_OK);
    free(descs);
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int ts[] = {1, 33, 300};
    for (int i = 0; i < n; i++)
        for (int t = 0; t < 3 && mjt_keep(i, 9); t++)
            route_and_check(&rng, &specs[i], ts[t], specs[i].num_experts + (t == 1), t == 2);
}

/* NaN ranks below every number; weights stay finite (NaN scored as -inf, ±inf as ±FLT_MAX), also
 * in rows of nothing but NaN or ±inf. Specials are injected into fresh rows; mjt_check_route
 * fails on any weight that is not finite. */
static void test_special_values(void **state)
{
    (void)state;
    if (!g_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    /* Presets (grouped and plain sigmoid + bias, softmax, top-k then softmax), then every other
     * score path: sqrt_softplus with a shared slot, a soft cap with sigmoid after top-k, and the
     * block-per-token layout above 1024 experts. */
    static const char *models[] = {"deepseek-v3", "kimi-k2", "qwen3-moe", "gpt-oss", "mixtral"};
    static const moejit_route_spec others[] = {
        {.num_experts = 512, .topk = 10, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .renormalize = 1, .scale_output = 1,
         .routed_scaling_factor = 2.5f, .shared_slots = 1},
        {.num_experts = 64, .topk = 4, .score = MOEJIT_SCORE_SIGMOID, .score_after_topk = 1, .softcap = 20.0f},
        {.num_experts = 2048, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX, .renormalize = 1},
    };
    for (int m = 0; m < 8; m++)
        for (int d = 0; d < 3; d++) {
            moejit_route_spec s;
            if (m < 5) moejit_route_preset(models[m], &s);
            else s = others[m - 5];
            s.dtype = (moejit_dtype)d;
            mj_route_shape shape;
            mj_route_normalize(&s, &shape);
            const int E = s.num_experts, T = (int)mjt_quick_cap(256, QUICK_TOKENS);
            const size_t elem = d == MOEJIT_DTYPE_F32 ? 4 : 2;
            float *bias = NULL;
            unsigned char *logits = mjt_route_inputs(&rng, &s, T, E, &bias);
            float *row = malloc(sizeof(float) * (size_t)E);
            for (int t = 0; t < T; t++) {
                unsigned char *r = logits + (size_t)t * E * elem;
                /* 0: untouched, 1: NaN, 2: +inf, 3: -inf; every 32nd row holds nothing else */
                const int kind = t % 4, whole = t % 32 >= 28;
                const int count = whole ? E : 1 + (int)(mjt_next(&rng) % (t % 16 == 1 ? (uint64_t)E : 3u));
                if (kind == 0) continue;
                const float v = kind == 1 ? NAN : kind == 2 ? INFINITY : -INFINITY;
                for (int c = 0; c < count; c++) {
                    const int e = whole ? c : (int)(mjt_next(&rng) % (uint64_t)E);
                    if (elem == 4) ((float *)r)[e] = v;
                    else ((uint16_t *)r)[e] = d == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
                }
                /* Decisions between finite scores must stay clear of rounding; exact ties (NaN
                 * against NaN, inf against inf) are fine: both sides break them by index. */
                for (int e = 0; e < E; e++) row[e] = mj_load_as_f32(r, s.dtype, e);
                const double margin = mj_route_row_margin(&shape, row, bias);
                if (margin > 0 && margin <= 1e-5) {
                    for (int e = 0; e < E; e++)
                        if (elem == 4) ((float *)r)[e] = -INFINITY;
                        else ((uint16_t *)r)[e] = d == MOEJIT_DTYPE_BF16 ? 0xff80u : 0xfc00u;
                }
            }
            route_logits_and_check(&s, logits, bias, T, E, 0, NULL, NULL);
            free(row), free(logits), free(bias);
        }
}

/* The same input routes to bit-identical output, run after run. */
static void test_determinism(void **state)
{
    (void)state;
    if (!g_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const char *models[] = {"deepseek-v3", "qwen3-next", "glm-4.5"};
    for (int m = 0; m < 3; m++) {
        moejit_route_spec s;
        moejit_route_preset(models[m], &s);
        const int T = (int)mjt_quick_cap(4096, QUICK_TOKENS), W = s.topk + s.shared_slots;
        float *bias = NULL;
        void *logits = mjt_route_inputs(&rng, &s, T, s.num_experts, &bias);
        int32_t *ids[2];
        float *w[2];
        for (int run = 0; run < 2; run++) route_logits_and_check(&s, logits, bias, T, s.num_experts, 0, &ids[run], &w[run]);
        assert_memory_equal(ids[0], ids[1], (size_t)T * W * 4);
        assert_memory_equal(w[0], w[1], (size_t)T * W * 4);
        free(ids[0]), free(ids[1]), free(w[0]), free(w[1]), free(logits), free(bias);
    }
}

/* A second process routes the same shape: a disk hit, no compile. */
static void test_second_process_hits_disk(void **state)
{
    (void)state;
    if (!g_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    moejit_route_spec s = {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .dtype = MOEJIT_DTYPE_BF16};
    route_and_check(&rng, &s, 64, 384, 0); /* compiled (or found) and published by this process */
    char self[4096], out[8192];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    char *argv[] = {self, "--child-disk-hit", g_cache, NULL};
    int rc = mjt_run(argv, NULL, out, sizeof out);
    if (rc != 0) fail_msg("child exited %d:\n%s", rc, out);
}

/* The child: a fresh process on the same cache directory. */
static int child_disk_hit(const char *cache)
{
    if (!mjt_gpu_available()) return 3;
    moejit_config cfg = {.cache_dir = cache};
    moejit_ctx *ctx;
    if (moejit_open(&cfg, &ctx) != MOEJIT_OK) return 4;
    moejit_route_spec s = {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .dtype = MOEJIT_DTYPE_BF16};
    uint16_t *logits = mjt_dev_alloc(384 * 2 * 16);
    int32_t *ids = mjt_dev_alloc(8 * 4 * 16);
    float *w = mjt_dev_alloc(8 * 4 * 16);
    mjt_dev_fill(logits, 0x3f, 384 * 2 * 16);
    moejit_route_args a = {.logits = logits, .ids = ids, .weights = w, .num_tokens = 16};
    moejit_status st = moejit_route(ctx, &s, &a, NULL);
    mjt_sync();
    moejit_stats stats;
    moejit_ctx_stats(ctx, &stats);
    printf("child: %s, compiles %llu, disk hits %llu\n", moejit_status_str(st), (unsigned long long)stats.compiles,
           (unsigned long long)stats.disk_hits);
    moejit_close(ctx);
    return (st == MOEJIT_OK && stats.compiles == 0 && stats.disk_hits == 1) ? 0 : 5;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--child-disk-hit")) return child_disk_hit(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_sweep),
        cmocka_unit_test(test_route_options),
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_edge_sweep),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_second_process_hits_disk),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, setup, teardown));
}
