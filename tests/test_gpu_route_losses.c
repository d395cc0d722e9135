/* GPU: the auxiliary losses — route's statistics, route_losses and route_backward's gradient of the
 * losses — against their C references on fresh random logits, with poisoned outputs, on every
 * path (several tokens a warp below 32 experts, a warp a token, a block a token above 1024), the
 * presets deepseek-v3, kimi-k2 and qwen3-moe, one sequence or several of unequal lengths (int32 and
 * int64 offsets); every result bit-identical on a second run. Skips without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static void dev_zero(void *p, size_t n) { mjt_dev_fill(p, 0, n); }

/* unequal sequences covering [0, T): S of them, int32 or int64 */
static int64_t make_offsets(int64_t T, int S, int64_t *off)
{
    off[0] = 0;
    for (int s = 1; s < S; s++) off[s] = T * s * s / ((int64_t)S * S); /* growing lengths, some maybe empty */
    off[S] = T;
    return S;
}

static void check_close(const char *what, double got, double want, double tol, int64_t i)
{
    if (!(fabs(got - want) <= tol)) fail_msg("%s[%lld] = %.9g, reference %.9g (tolerance %.3g)", what, (long long)i, got, want, tol);
}

static void run_case(moejit_route_spec spec, int64_t T, int S, int off64, mjt_rng *rng)
{
    const int E = spec.num_experts, K = spec.topk, W = K + spec.shared_slots;
    spec.dtype = MOEJIT_DTYPE_F32;
    spec.aux_stats = MOEJIT_AUX_Z_LOSS | MOEJIT_AUX_LOAD_BALANCE | (S > 1 ? MOEJIT_AUX_SEQ_LOAD_BALANCE : 0);
    spec.seq_offset_dtype = off64 ? MOEJIT_INDEX_INT64 : MOEJIT_INDEX_INT32;
    const int N = S > 1 ? S : 1;
    const size_t nl = (size_t)(T * E), nw = (size_t)(T * W), ns = (size_t)N * (size_t)E;
    float *logits = malloc(nl * 4), *bias = malloc((size_t)E * 4), *lse = malloc((size_t)T * 4), *ref_lse = malloc((size_t)T * 4);
    float *weights = malloc(nw * 4), *gw = calloc(nw, 4), *grad = malloc(nl * 4), *grad2 = malloc(nl * 4),
          *ref_grad = malloc(nl * 4);
    int32_t *ids = malloc(nw * 4), *ref_ids = malloc(nw * 4), *counts = malloc(ns * 4), *counts2 = malloc(ns * 4),
            *ref_counts = calloc(ns, 4);
    uint64_t *sums = malloc(ns * 8), *sums2 = malloc(ns * 8), *ref_sums = calloc(ns, 8);
    int64_t off[65];
    int32_t off32[65];
    make_offsets(T, N, off);
    for (int s = 0; s <= N; s++) off32[s] = (int32_t)off[s];
    for (size_t i = 0; i < nl; i++) logits[i] = (float)(2.0 * mjt_normal(rng));
    for (int e = 0; e < E; e++) bias[e] = (float)(0.1 * mjt_normal(rng));
    void *d_logits = mjt_dev_alloc(nl * 4), *d_bias = mjt_dev_alloc((size_t)E * 4), *d_ids = mjt_dev_alloc(nw * 4),
         *d_w = mjt_dev_alloc(nw * 4), *d_sums = mjt_dev_alloc(ns * 8), *d_counts = mjt_dev_alloc(ns * 4),
         *d_lse = mjt_dev_alloc((size_t)T * 4), *d_off = mjt_dev_alloc(sizeof off), *d_losses = mjt_dev_alloc(12),
         *d_gl = mjt_dev_alloc(12), *d_gw = mjt_dev_alloc(nw * 4), *d_grad = mjt_dev_alloc(nl * 4);
    mjt_h2d(d_logits, logits, nl * 4);
    mjt_h2d(d_bias, bias, (size_t)E * 4);
    mjt_h2d(d_off, off64 ? (void *)off : (void *)off32, off64 ? sizeof off : sizeof off32);
    moejit_aux_stats aux = {.prob_sums = d_sums, .counts = d_counts, .lse = d_lse, .seq_offsets = d_off, .num_seqs = N};
    moejit_route_args a = {.logits = d_logits, .bias = spec.has_bias ? d_bias : NULL, .ids = d_ids, .weights = d_w,
                           .num_tokens = T, .aux = &aux};
    float losses[3], losses2[3], ref_losses[3];
    const float gl[3] = {0.5f, S > 1 ? -0.75f : 0.0f, 0.25f};
    mjt_h2d(d_gl, gl, 12);
    mjt_h2d(d_gw, gw, nw * 4);
    moejit_route_losses_spec ls = {.num_experts = E, .topk = K, .aux_stats = spec.aux_stats,
                                   .seq_offset_dtype = spec.seq_offset_dtype};
    moejit_route_losses_args la = {.aux = &aux, .losses = d_losses, .num_tokens = T};
    moejit_route_backward_spec bs = {.route = spec};
    moejit_route_backward_args ba = {.logits = d_logits, .ids = d_ids, .grad_weights = d_gw, .grad_logits = d_grad,
                                     .num_tokens = T, .grad_losses = d_gl, .aux = &aux};
    for (int pass = 0; pass < 2; pass++) {
        dev_zero(d_sums, ns * 8), dev_zero(d_counts, ns * 4);
        mjt_dev_fill(d_lse, 0xff, (size_t)T * 4), mjt_dev_fill(d_losses, 0xff, 12), mjt_dev_fill(d_grad, 0xff, nl * 4);
        if (moejit_route(mjt_gpu_ctx, &spec, &a, NULL) != MOEJIT_OK) fail_msg("route: %s", moejit_last_error(NULL));
        if (moejit_route_losses(mjt_gpu_ctx, &ls, &la, NULL) != MOEJIT_OK)
            fail_msg("route_losses: %s", moejit_last_error(NULL));
        if (moejit_route_backward(mjt_gpu_ctx, &bs, &ba, NULL) != MOEJIT_OK)
            fail_msg("route_backward: %s", moejit_last_error(NULL));
        mjt_sync();
        mjt_d2h(pass ? sums2 : sums, d_sums, ns * 8);
        mjt_d2h(pass ? counts2 : counts, d_counts, ns * 4);
        mjt_d2h(pass ? losses2 : losses, d_losses, 12);
        mjt_d2h(pass ? grad2 : grad, d_grad, nl * 4);
        if (!pass) mjt_d2h(lse, d_lse, (size_t)T * 4), mjt_d2h(ids, d_ids, nw * 4);
    }
    assert_memory_equal(sums, sums2, ns * 8);
    assert_memory_equal(counts, counts2, ns * 4);
    assert_memory_equal(losses, losses2, 12);
    assert_memory_equal(grad, grad2, nl * 4);
    /* counts: exactly those of the ids route wrote (logical: no placement here) */
    memset(ref_counts, 0, ns * 4);
    for (int64_t t = 0; t < T; t++) {
        int q = 0;
        while (q + 1 < N && t >= off[q + 1]) q++;
        for (int k = 0; k < K; k++) ref_counts[(size_t)q * E + ids[t * W + k]]++;
    }
    assert_memory_equal(counts, ref_counts, ns * 4);
    /* prob sums and lse: the reference's (selections may differ at near ties; the scores do not) */
    moejit_aux_stats haux = {.prob_sums = ref_sums, .counts = calloc(ns, 4), .lse = ref_lse,
                             .seq_offsets = off64 ? (void *)off : (void *)off32, .num_seqs = N};
    moejit_route_args ha = {.logits = logits, .bias = bias, .ids = ref_ids, .weights = weights, .num_tokens = T, .aux = &haux};
    if (moejit_route_reference(&spec, &ha) != MOEJIT_OK) fail_msg("route reference: %s", moejit_last_error(NULL));
    for (size_t i = 0; i < ns; i++)
        check_close("prob_sums", ldexp((double)sums[i], -32), ldexp((double)ref_sums[i], -32),
                    1e-5 * ldexp((double)ref_sums[i], -32) + 1e-6 * (double)T, (int64_t)i);
    for (int64_t t = 0; t < T; t++) check_close("lse", lse[t], ref_lse[t], 2e-6 * fmax(1.0, fabs(ref_lse[t])), t);
    /* the losses: the reference on the GPU's statistics */
    moejit_aux_stats gaux = {.prob_sums = sums, .counts = counts, .lse = lse, .seq_offsets = haux.seq_offsets, .num_seqs = N};
    moejit_route_losses_args hl = {.aux = &gaux, .losses = ref_losses, .num_tokens = T};
    if (moejit_route_losses_reference(&ls, &hl) != MOEJIT_OK) fail_msg("losses reference: %s", moejit_last_error(NULL));
    for (int i = 0; i < 3; i++) check_close("losses", losses[i], ref_losses[i], 1e-6 * fabs(ref_losses[i]) + 1e-30, i);
    /* the gradient: the reference on the GPU's ids and counts */
    moejit_route_backward_args hb = {.logits = logits, .ids = ids, .grad_weights = gw, .grad_logits = ref_grad,
                                     .num_tokens = T, .grad_losses = gl, .aux = &gaux};
    if (moejit_route_backward_reference(&bs, &hb) != MOEJIT_OK) fail_msg("backward reference: %s", moejit_last_error(NULL));
    double scale = 0.0;
    for (size_t i = 0; i < nl; i++) scale = fmax(scale, fabs(ref_grad[i]));
    for (size_t i = 0; i < nl; i++) check_close("grad_logits", grad[i], ref_grad[i], 1e-4 * fabs(ref_grad[i]) + 1e-5 * scale, (int64_t)i);
    free(haux.counts);
    free(logits), free(bias), free(lse), free(ref_lse), free(weights), free(gw), free(grad), free(grad2), free(ref_grad);
    free(ids), free(ref_ids), free(counts), free(counts2), free(ref_counts), free(sums), free(sums2), free(ref_sums);
    void *dev[] = {d_logits, d_bias, d_ids, d_w, d_sums, d_counts, d_lse, d_off, d_losses, d_gl, d_gw, d_grad};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) mjt_dev_free(dev[i]);
}

static void test_presets(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const char *models[] = {"deepseek-v3", "kimi-k2", "qwen3-moe"};
    /* 512 | 513: the last batch of route's small-batch entry and the first of its main one (route.h) */
    static const int64_t tokens[] = {1, 37, 512, 513, 4096, 16384};
    for (size_t m = 0; m < 3; m++)
        for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
            for (int S = 1; S <= 5; S += 4) {
                moejit_route_spec s;
                assert_int_equal(moejit_route_preset(models[m], &s), MOEJIT_OK);
                run_case(s, mjt_quick_cap(tokens[i], 64), S, (int)(i & 1), &rng);
            }
}

static void test_paths(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const moejit_route_spec specs[] = {
        {.num_experts = 4096, .topk = 8},
        {.num_experts = 2000, .topk = 6, .score = MOEJIT_SCORE_SIGMOID, .softcap = 20.0f},
        {.num_experts = 1024, .topk = 8, .score = MOEJIT_SCORE_SQRT_SOFTPLUS},
        {.num_experts = 8, .topk = 2},
        {.num_experts = 20, .topk = 3, .score = MOEJIT_SCORE_SIGMOID},
        {.num_experts = 3, .topk = 1, .score = MOEJIT_SCORE_SQRT_SOFTPLUS},
        {.num_experts = 128, .topk = 4, .score_after_topk = 1, .softcap = 30.0f},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        for (int S = 1; S <= 7; S += 6) {
            run_case(specs[i], mjt_quick_cap(1000, 64), S, S > 1, &rng);
            run_case(specs[i], 3, S, 0, &rng);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_presets),
        cmocka_unit_test(test_paths),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
