/* GPU: route_backward against its C reference on fresh batches routed by route on the GPU (its ids
 * as route wrote them, then some rows padded, slots dropped, ids repeated or out of range), with
 * poisoned outputs, on every path: several tokens a warp, a warp a token (the presets), a block a
 * token; every score and option, f32/bf16/f16 logits, non-finite logits; bit-identical run to run.
 * Every test skips without a device. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/numeric.h"
#include "support.h"

/* Under compute-sanitizer (MOEJIT_TEST_QUICK=1) batches stop here: every code path, fewer tokens. */
enum { QUICK_TOKENS = 64 };

/* Per element: |kernel − reference| <= REL·|reference| + ABS·Σ_j|grad_weights_j|·factor of the
 * row (the size of the terms a gradient is made of; f32 cancellation between them is what the
 * relative part cannot cover). A soft cap turns the few-ulp error of tanhf(x) into an absolute
 * error of the capped logit, a relative one of its softmax score: REL_CAP there (as route's test). */
#define REL 1e-5
#define REL_CAP 2e-5
#define ABS 2e-6

static double g_worst; /* largest |error| / tolerance seen */

typedef struct reference_job {
    const moejit_route_backward_spec *spec;
    const unsigned char *logits;
    int64_t stride;
    const unsigned char *ids;
    const float *gw;
    float *grad;
} reference_job;

static void reference_rows(int64_t b, int64_t e, void *user)
{
    const reference_job *j = user;
    const moejit_route_spec *r = &j->spec->route;
    const int W = r->topk + r->shared_slots, elem = r->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    const int id_bytes = mjt_index_bytes(r->max_replicas ? r->logical_id_dtype : r->id_dtype);
    const moejit_route_backward_args a = {.logits = j->logits + (size_t)(b * j->stride) * (size_t)elem,
                                          .ids = j->ids + (size_t)(b * W) * (size_t)id_bytes,
                                          .grad_weights = j->gw + b * W,
                                          .grad_logits = j->grad + b * r->num_experts,
                                          .num_tokens = e - b,
                                          .row_stride = j->stride};
    if (moejit_route_backward_reference(j->spec, &a) != MOEJIT_OK)
        fail_msg("route_backward reference: %s", moejit_last_error(NULL));
}

/* The ids of a batch as a type's integers. */
static void set_id(void *ids, moejit_index_dtype t, int64_t i, int64_t v)
{
    if (t == MOEJIT_INDEX_INT64) ((int64_t *)ids)[i] = v;
    else if (t == MOEJIT_INDEX_INT16) ((int16_t *)ids)[i] = (int16_t)v;
    else ((int32_t *)ids)[i] = (int32_t)v;
}

/* Non-finite logits in some rows: one NaN, one ±inf, or (every 16th row) nothing but NaN. */
static void inject_specials(mjt_rng *rng, const moejit_route_spec *s, unsigned char *logits, int64_t T, int64_t stride)
{
    const int E = s->num_experts;
    const size_t elem = s->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    for (int64_t t = 0; t < T; t++) {
        unsigned char *row = logits + (size_t)(t * stride) * elem;
        const int kind = (int)(t % 4), whole = t % 16 == 15;
        if (kind == 0) continue;
        const float v = whole || kind == 1 ? NAN : kind == 2 ? INFINITY : -INFINITY;
        for (int c = 0; c < (whole ? E : 1 + (int)(mjt_next(rng) % 3)); c++) {
            const int e = whole ? c : (int)(mjt_next(rng) % (uint64_t)E);
            if (elem == 4) ((float *)row)[e] = v;
            else ((uint16_t *)row)[e] = s->dtype == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
        }
    }
}

enum { PLACED_REPLICAS = 2, PLACED_EXTRA = 16 };

/* Route T fresh rows on the GPU, differentiate them (twice: bit-identical) and check against the
 * reference. mutate: rows padded, slots dropped, ids repeated or out of range; specials: NaN/inf
 * logits; placed: route with placement (R = 2, P = E + 16) recording logical ids, which the
 * backward reads. */
static void backward_and_check(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int mutate, int specials,
                               int placed)
{
    T = mjt_quick_cap(T, QUICK_TOKENS);
    moejit_route_spec s = *spec;
    if (placed) {
        s.max_replicas = PLACED_REPLICAS, s.num_physical_experts = s.num_experts + PLACED_EXTRA;
        s.replay = MOEJIT_REPLAY_RECORD, s.logical_id_dtype = MOEJIT_INDEX_INT64;
    }
    const moejit_route_backward_spec bs = {.route = s};
    const int E = s.num_experts, K = s.topk, W = K + s.shared_slots;
    const int64_t stride = T == 37 ? E + 3 : E; /* an odd row stride now and then */
    const size_t elem = s.dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    const moejit_index_dtype read_type = placed ? s.logical_id_dtype : s.id_dtype;
    const size_t read_bytes = (size_t)mjt_index_bytes(read_type);
    const size_t in_bytes = (size_t)(T * stride) * elem, slots = (size_t)(T * W), grads = (size_t)T * (size_t)E;
    float *bias = NULL;
    unsigned char *logits = mjt_route_inputs(rng, &s, T, stride, &bias);
    if (specials) inject_specials(rng, &s, logits, T, stride);

    /* the forward, on the GPU */
    void *d_logits = mjt_dev_alloc(in_bytes), *d_ids = mjt_dev_alloc(slots * 8), *d_logical = NULL;
    float *d_bias = s.has_bias ? mjt_dev_alloc(sizeof(float) * (size_t)E) : NULL, *d_w = mjt_dev_alloc(slots * 4);
    int32_t *d_map = NULL, *d_count = NULL;
    mjt_h2d(d_logits, logits, in_bytes);
    if (bias) mjt_h2d(d_bias, bias, sizeof(float) * (size_t)E);
    moejit_route_args ra = {.logits = d_logits, .bias = d_bias, .ids = d_ids, .weights = d_w, .num_tokens = T,
                            .row_stride = stride};
    if (placed) {
        int32_t *map = malloc(sizeof(int32_t) * (size_t)E * PLACED_REPLICAS), *count = malloc(sizeof(int32_t) * (size_t)E);
        for (int e = 0; e < E; e++) {
            count[e] = 1 + e % PLACED_REPLICAS;
            for (int r = 0; r < PLACED_REPLICAS; r++) map[e * PLACED_REPLICAS + r] = (e * 7 + r * 5) % (E + PLACED_EXTRA);
        }
        d_map = mjt_dev_alloc(sizeof(int32_t) * (size_t)E * PLACED_REPLICAS);
        d_count = mjt_dev_alloc(sizeof(int32_t) * (size_t)E);
        d_logical = mjt_dev_alloc(slots * 8);
        mjt_h2d(d_map, map, sizeof(int32_t) * (size_t)E * PLACED_REPLICAS);
        mjt_h2d(d_count, count, sizeof(int32_t) * (size_t)E);
        ra.logical_to_physical = d_map, ra.replica_count = d_count, ra.logical_ids = d_logical;
        free(map), free(count);
    }
    moejit_status st = moejit_route(mjt_gpu_ctx, &s, &ra, NULL);
    if (st != MOEJIT_OK) fail_msg("moejit_route: %s: %s", moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    mjt_sync();
    /* the ids the backward reads: route's, or its logical ones; some rows mutated */
    void *read_ids = placed ? d_logical : d_ids;
    unsigned char *ids = malloc(slots * read_bytes);
    mjt_d2h(ids, read_ids, slots * read_bytes);
    for (int64_t t = 0; mutate && t < T; t++) {
        const int64_t at = t * W;
        switch (t % 7) {
        case 1: set_id(ids, read_type, at + (int64_t)(mjt_next(rng) % (uint64_t)K), -1); break; /* a dropped slot */
        case 2: set_id(ids, read_type, at + (int64_t)(mjt_next(rng) % (uint64_t)K), E + 1); break; /* out of range */
        case 3: /* a repeated id */
            if (K > 1) set_id(ids, read_type, at + K - 1, mjt_index_get(ids, read_type, at));
            break;
        case 4: /* a padded row */
            for (int j = 0; j < W; j++) set_id(ids, read_type, at + j, -1);
            break;
        default: break;
        }
    }
    mjt_h2d(read_ids, ids, slots * read_bytes);
    /* grad_weights: normal, never zero */
    float *gw = malloc(slots * 4);
    for (size_t i = 0; i < slots; i++) {
        double g = mjt_normal(rng);
        gw[i] = (float)(fabs(g) < 1e-3 ? 0.5 : g);
    }
    float *d_gw = mjt_dev_alloc(slots * 4), *d_grad = mjt_dev_alloc(grads * 4);
    mjt_h2d(d_gw, gw, slots * 4);

    /* the backward, twice, on poisoned outputs */
    float *out[2];
    for (int run = 0; run < 2; run++) {
        mjt_dev_fill(d_grad, 0xff, grads * 4); /* NaN */
        const moejit_route_backward_args ba = {.logits = d_logits, .ids = read_ids, .grad_weights = d_gw,
                                               .grad_logits = d_grad, .num_tokens = T, .row_stride = stride};
        st = moejit_route_backward(mjt_gpu_ctx, &bs, &ba, NULL);
        if (st != MOEJIT_OK)
            fail_msg("moejit_route_backward: %s: %s", moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
        mjt_sync();
        out[run] = malloc(grads * 4);
        mjt_d2h(out[run], d_grad, grads * 4);
    }
    float *ref = malloc(grads * 4);
    reference_job job = {&bs, logits, stride, ids, gw, ref};
    mjt_parallel_for(T, reference_rows, &job);

    char what[160];
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE_BACKWARD, .route_backward = bs};
    moejit_kernel_name(&d, what, sizeof what);
    snprintf(what + strlen(what), sizeof what - strlen(what), " T=%lld%s%s%s", (long long)T, mutate ? " mutated" : "",
             specials ? " specials" : "", placed ? " placed" : "");
    if (memcmp(out[0], out[1], grads * 4)) fail_msg("%s: two runs differ", what);
    const double F = s.scale_output && s.routed_scaling_factor > 0 ? s.routed_scaling_factor : 1.0;
    const double rel = s.softcap > 0 ? REL_CAP : REL;
    for (int64_t t = 0; t < T; t++) {
        double l1 = 0.0;
        for (int j = 0; j < W; j++) l1 += fabs((double)gw[t * W + j]) * F;
        for (int e = 0; e < E; e++) {
            const double g = out[0][t * E + e], r = ref[t * E + e];
            const double ratio = fabs(g - r) / (rel * fabs(r) + ABS * l1);
            if (!(ratio <= 1.0) || !isfinite(g))
                fail_msg("%s: row %lld expert %d: kernel %.9g, reference %.9g (%.3g× the tolerance)", what, (long long)t,
                         e, g, r, ratio);
            if (ratio > g_worst) g_worst = ratio;
        }
    }
    free(out[0]), free(out[1]), free(ref), free(gw), free(ids), free(logits), free(bias);
    mjt_dev_free(d_logits), mjt_dev_free(d_ids), mjt_dev_free(d_logical), mjt_dev_free(d_bias), mjt_dev_free(d_w);
    mjt_dev_free(d_map), mjt_dev_free(d_count), mjt_dev_free(d_gw), mjt_dev_free(d_grad);
}

static const int k_tokens[] = {1, 37, 4096};

/* Compile the route and route_backward kernels of n specs first, in parallel. */
static void prewarm(const moejit_route_spec *specs, size_t n, int placed)
{
    moejit_kernel_desc *d = calloc(2 * n, sizeof *d);
    for (size_t i = 0; i < n; i++) {
        moejit_route_spec s = specs[i];
        if (placed) {
            s.max_replicas = PLACED_REPLICAS, s.num_physical_experts = s.num_experts + PLACED_EXTRA;
            s.replay = MOEJIT_REPLAY_RECORD, s.logical_id_dtype = MOEJIT_INDEX_INT64;
        }
        d[2 * i] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE, .route = s};
        d[2 * i + 1] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE_BACKWARD, .route_backward = {.route = s}};
    }
    const moejit_status st = moejit_prewarm(mjt_gpu_ctx, d, 2 * n, NULL, NULL);
    if (st != MOEJIT_OK) fail_msg("prewarm: %s: %s", moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    free(d);
}

/* The presets' routings (f32, bf16, f16 logits) and the block path. */
static void test_presets_and_paths(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const char *models[] = {"deepseek-v3", "kimi-k2", "qwen3-moe", "gpt-oss", "mixtral", "llama-4"};
    moejit_route_spec presets[18];
    for (size_t m = 0; m < 6; m++)
        for (int d = 0; d < 3; d++) {
            moejit_route_spec *s = &presets[m * 3 + (size_t)d];
            assert_int_equal(moejit_route_preset(models[m], s), MOEJIT_OK);
            s->dtype = (moejit_dtype)d;
        }
    prewarm(presets, 18, 0);
    for (int i = 0; i < 18; i++)
        for (int t = 0; t < 3; t++) backward_and_check(&rng, &presets[i], k_tokens[t], t > 0, 0, 0);
    /* a block per token: softmax over the row, with and without renormalisation and a soft cap */
    static const moejit_route_spec wide[] = {
        {.num_experts = 2048, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX},
        {.num_experts = 2048, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX, .renormalize = 1, .dtype = MOEJIT_DTYPE_BF16},
        {.num_experts = 4096, .topk = 64, .score = MOEJIT_SCORE_SOFTMAX, .softcap = 30.0f, .shared_slots = 2,
         .routed_scaling_factor = 2.5f, .dtype = MOEJIT_DTYPE_F16},
        {.num_experts = 1025, .topk = 33, .score = MOEJIT_SCORE_SIGMOID, .has_bias = 1, .renormalize = 1,
         .scale_output = 1, .routed_scaling_factor = 2.5f, .shared_slots = 1},
        {.num_experts = 3000, .topk = 16, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .num_groups = 6, .topk_groups = 3},
        {.num_experts = 2048, .topk = 4, .score = MOEJIT_SCORE_SOFTMAX, .score_after_topk = 1, .renormalize = 1},
    };
    prewarm(wide, sizeof wide / sizeof wide[0], 0);
    for (size_t w = 0; w < sizeof wide / sizeof wide[0]; w++)
        for (int t = 0; t < 3; t++) backward_and_check(&rng, &wide[w], k_tokens[t], t > 0, 0, 0);
}

/* Small E: several tokens a warp (1, 2, 4, 8, 16 lanes a token), every score × score_after_topk ×
 * soft cap × renormalisation, each on two E, with scaling, shared slots, groups with a bias and
 * the dtypes spread over them. */
static void test_small_experts(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int es[] = {1, 2, 3, 8, 12, 16, 24, 32};
    moejit_route_spec specs[48];
    int n = 0;
    for (int v = 0; v < 3 * 2 * 2 * 2; v++)
        for (int half = 0; half < 2; half++) {
            const int E = es[(v + 4 * half) % 8];
            moejit_route_spec s = {.num_experts = E, .topk = E < 4 ? E : 4, .score = (moejit_score)(v % 3),
                                   .score_after_topk = v / 3 % 2, .softcap = v / 6 % 2 ? 5.0f : 0.0f,
                                   .renormalize = v / 12 % 2, .scale_output = (v + half) % 2,
                                   .routed_scaling_factor = 2.5f, .shared_slots = (v + half) % 3,
                                   .dtype = (moejit_dtype)((v / 2 + half) % 3)};
            if (E >= 8 && E % 4 == 0 && (v + half) % 2) s.num_groups = 4, s.topk_groups = 2, s.has_bias = 1;
            specs[n++] = s;
        }
    prewarm(specs, (size_t)n, 0);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < 3 && mjt_keep(i, 7); t++) backward_and_check(&rng, &specs[i], k_tokens[t], t > 0, 0, 0);
}

/* Wider warp-path shapes: every scoring mode and option at E = 60, 160, 512, 1000, 1024 with
 * K up to 64. */
static void test_options(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const moejit_route_spec specs[] = {
        {.num_experts = 60, .topk = 60, .score = MOEJIT_SCORE_SOFTMAX, .score_after_topk = 1, .renormalize = 1},
        {.num_experts = 160, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX, .softcap = 30.0f, .renormalize = 1},
        {.num_experts = 160, .topk = 6, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .scale_output = 1,
         .routed_scaling_factor = 2.5f, .shared_slots = 2},
        {.num_experts = 512, .topk = 10, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .renormalize = 1, .dtype = MOEJIT_DTYPE_F16},
        {.num_experts = 1000, .topk = 64, .score = MOEJIT_SCORE_SOFTMAX, .shared_slots = 64,
         .routed_scaling_factor = 2.0f, .dtype = MOEJIT_DTYPE_BF16},
        {.num_experts = 1024, .topk = 40, .score = MOEJIT_SCORE_SIGMOID, .softcap = 10.0f, .renormalize = 1,
         .scale_output = 1, .routed_scaling_factor = 3.0f, .shared_slots = 1},
        {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .has_bias = 1, .renormalize = 1,
         .scale_output = 1, .routed_scaling_factor = 2.827f, .id_dtype = MOEJIT_INDEX_INT64},
    };
    prewarm(specs, sizeof specs / sizeof specs[0], 0);
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        for (int t = 0; t < 3; t++) backward_and_check(&rng, &specs[i], k_tokens[t], t > 0, 0, 0);
}

/* NaN and ±inf logits (and rows of nothing but NaN): finite gradients equal to the reference's;
 * placement, whose logical ids the backward reads. */
static void test_special_values_and_placement(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const char *models[] = {"deepseek-v3", "kimi-k2", "qwen3-moe", "gpt-oss"};
    for (int m = 0; m < 4; m++) {
        moejit_route_spec s;
        moejit_route_preset(models[m], &s);
        backward_and_check(&rng, &s, 256, 1, 1, 0);
        backward_and_check(&rng, &s, 300, 1, 0, 1);
    }
    static const moejit_route_spec others[] = {
        {.num_experts = 512, .topk = 10, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .renormalize = 1, .scale_output = 1,
         .routed_scaling_factor = 2.5f, .shared_slots = 1},
        {.num_experts = 64, .topk = 4, .score = MOEJIT_SCORE_SIGMOID, .score_after_topk = 1, .softcap = 20.0f},
        {.num_experts = 16, .topk = 4, .score = MOEJIT_SCORE_SOFTMAX, .softcap = 5.0f, .shared_slots = 1,
         .routed_scaling_factor = 2.0f},
        {.num_experts = 2048, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX, .renormalize = 1},
        {.num_experts = 2048, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX, .softcap = 30.0f},
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        for (int d = 0; d < 3; d++) {
            moejit_route_spec s = others[i];
            s.dtype = (moejit_dtype)d;
            backward_and_check(&rng, &s, 256, 1, 1, 0);
        }
    printf("[ info     ] largest error: %.3g of the tolerance (%g relative, %g with a soft cap, + %g of "
           "Σ|grad_weights|)\n",
           g_worst, REL, REL_CAP, ABS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets_and_paths),
        cmocka_unit_test(test_small_experts),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_special_values_and_placement),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
