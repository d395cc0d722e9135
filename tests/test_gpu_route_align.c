/* GPU: route_align equals moejit_route followed by moejit_align, bit for bit, on both of its
 * paths (the fused kernel up to its token limit, route's and align's kernels beyond it); its
 * route part matches the route reference and its align part the align reference applied to the
 * GPU's ids. Every test skips without a device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/align/align.h"
#include "support.h"

/* Device route outputs, poisoned like test_gpu_route's (id -1, weight NaN). */
typedef struct route_out {
    int32_t *ids;
    float *w;
} route_out;

static route_out route_out_new(size_t n)
{
    route_out o = {mjt_dev_alloc(4 * n), mjt_dev_alloc(4 * n)};
    mjt_dev_fill(o.ids, 0xff, 4 * n);
    mjt_dev_fill(o.w, 0xff, 4 * n);
    return o;
}

static void expect_equal_bytes(const void *dev_a, const void *dev_b, size_t bytes, const char *what, const char *name)
{
    unsigned char *a = malloc(bytes + 1), *b = malloc(bytes + 1);
    mjt_d2h(a, dev_a, bytes);
    mjt_d2h(b, dev_b, bytes);
    for (size_t i = 0; i < bytes; i++)
        if (a[i] != b[i]) fail_msg("%s: %s differ from route + align at byte %zu (int32 %zu)", what, name, i, i / 4);
    free(a), free(b);
}

/* One batch three ways: route_align; route then align; the references. */
static void check_batch(mjt_rng *rng, const moejit_route_align_spec *spec, int64_t T)
{
    const moejit_route_spec *r = &spec->route;
    const int E = r->num_experts, S = r->shared_slots, W = r->topk + S, B = spec->block_size;
    const size_t elem = r->dtype == MOEJIT_DTYPE_F32 ? 4 : 2, n = (size_t)(T * W);
    char what[200];
    moejit_kernel_desc desc = {.op = MOEJIT_OP_ROUTE_ALIGN, .route_align = *spec};
    moejit_kernel_name(&desc, what, sizeof what);
    snprintf(what + strlen(what), sizeof what - strlen(what), " T=%lld", (long long)T);

    int64_t cap, cap_align;
    size_t ws_fused, ws_align;
    const moejit_align_spec aspec = {.num_experts = E + S, .block_size = B};
    assert_int_equal(moejit_route_align_capacity(spec, T, &cap), MOEJIT_OK);
    assert_int_equal(moejit_route_align_workspace_bytes(spec, T, &ws_fused), MOEJIT_OK);
    assert_int_equal(moejit_align_capacity(&aspec, T, W, &cap_align), MOEJIT_OK);
    assert_int_equal(moejit_align_workspace_bytes(&aspec, T, W, &ws_align), MOEJIT_OK);
    assert_int_equal(cap, cap_align);

    float *bias = NULL;
    void *logits = mjt_route_inputs(rng, r, T, E, &bias);
    void *d_logits = mjt_dev_alloc((size_t)T * (size_t)E * elem);
    float *d_bias = bias ? mjt_dev_alloc(4 * (size_t)E) : NULL;
    mjt_h2d(d_logits, logits, (size_t)T * (size_t)E * elem);
    if (bias) mjt_h2d(d_bias, bias, 4 * (size_t)E);
    route_out fused = route_out_new(n), plain = route_out_new(n);
    mjt_align_bufs fused_maps = mjt_align_bufs_new(E + S, B, cap, (int64_t)n, 1),
                   plain_maps = mjt_align_bufs_new(E + S, B, cap, (int64_t)n, 1);
    void *ws_a = ws_fused ? mjt_dev_alloc(ws_fused) : NULL, *ws_b = ws_align ? mjt_dev_alloc(ws_align) : NULL;

    moejit_route_align_args ra = {
        .route = {.logits = d_logits, .bias = d_bias, .ids = fused.ids, .weights = fused.w, .num_tokens = T},
        .align = mjt_align_select(&fused_maps, MJT_ALIGN_ALL, cap)};
    ra.align.workspace = ws_a, ra.align.workspace_bytes = ws_fused;
    moejit_status st = moejit_route_align(mjt_gpu_ctx, spec, &ra, NULL);
    if (st != MOEJIT_OK) fail_msg("%s: moejit_route_align: %s: %s", what, moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    moejit_route_args rt = {.logits = d_logits, .bias = d_bias, .ids = plain.ids, .weights = plain.w, .num_tokens = T};
    assert_int_equal(moejit_route(mjt_gpu_ctx, r, &rt, NULL), MOEJIT_OK);
    moejit_align_args al = {.ids = plain.ids, .num_tokens = T, .topk = W,
                            .out = mjt_align_select(&plain_maps, MJT_ALIGN_ALL, cap)};
    al.out.workspace = ws_b, al.out.workspace_bytes = ws_align;
    assert_int_equal(moejit_align(mjt_gpu_ctx, &aspec, &al, NULL), MOEJIT_OK);
    mjt_sync();

    /* 1. Bit-identical to route then align. */
    expect_equal_bytes(fused.ids, plain.ids, 4 * n, what, "ids");
    expect_equal_bytes(fused.w, plain.w, 4 * n, what, "weights");
    mjt_align_bufs plain_host = mjt_align_bufs_new(E + S, B, cap, (int64_t)n, 0);
    for (int i = 0; i < 6; i++) mjt_d2h(plain_host.buf[i], plain_maps.buf[i], 4 * plain_host.len[i]);
    mjt_align_compare(&fused_maps, &plain_host, what);

    /* 2. Against the references: route within tolerance, align exactly on the GPU's ids. */
    int32_t *ids = malloc(4 * n + 4), *ref_ids = malloc(4 * n + 4);
    float *w = malloc(4 * n + 4), *ref_w = malloc(4 * n + 4);
    mjt_d2h(ids, fused.ids, 4 * n);
    mjt_d2h(w, fused.w, 4 * n);
    const moejit_route_args ref_args = {.logits = logits, .bias = bias, .ids = ref_ids, .weights = ref_w,
                                        .num_tokens = T, .row_stride = E};
    assert_int_equal(moejit_route_reference(r, &ref_args), MOEJIT_OK);
    mjt_check_route(r, T, ref_ids, ref_w, ids, w, r->softcap > 0 ? 1e-5 : 1e-6, what);
    mjt_align_bufs ref = mjt_align_bufs_new(E + S, B, cap, (int64_t)n, 0);
    moejit_align_args host = {.ids = ids, .num_tokens = T, .topk = W, .out = mjt_align_select(&ref, MJT_ALIGN_ALL, cap)};
    assert_int_equal(moejit_align_reference(&aspec, &host), MOEJIT_OK);
    mjt_align_compare(&fused_maps, &ref, what);

    free(ids), free(ref_ids), free(w), free(ref_w), free(logits), free(bias);
    mjt_align_bufs_free(&ref), mjt_align_bufs_free(&plain_host);
    mjt_align_bufs_free(&fused_maps), mjt_align_bufs_free(&plain_maps);
    mjt_dev_free(fused.ids), mjt_dev_free(fused.w), mjt_dev_free(plain.ids), mjt_dev_free(plain.w);
    mjt_dev_free(d_logits), mjt_dev_free(d_bias), mjt_dev_free(ws_a), mjt_dev_free(ws_b);
}

static void test_route_align_matches_route_then_align(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (size_t i = 0; i < mjt_route_align_shape_count; i++) {
        const moejit_route_align_spec *spec = &mjt_route_align_shapes[i];
        int64_t fused;
        assert_int_equal(moejit_route_align_fused_tokens(spec, &fused), MOEJIT_OK);
        /* The fused kernel's edges on sm_90+ (one block up to 4 tokens, a cluster growing by a
         * block every 4 up to 8 blocks, ragged last blocks, 8 tokens a block at 64; one block's 8
         * below sm_90), then the fallback: fused + 1, 128 and 1000 (align's small path or
         * onepass), the last one align's three launches. */
        const int64_t W = spec->route.topk + spec->route.shared_slots;
        const int64_t ts[] = {0,  1,  4,  5,     8,         9,   31,   32, 33,
                              63, 64, 65, fused, fused + 1, 128, 1000, MJ_ALIGN_ONEPASS_MAX_IDS / W + 1};
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) check_batch(&rng, spec, mjt_quick_cap(ts[t], 128));
    }
}

/* A decode step that compiles nothing more: the fused path is one launch, at T = 4 (one block)
 * and, on sm_90+, at T = 64 (a cluster of 8 blocks; below sm_90 one block takes 8 tokens). */
static void test_fused_is_one_launch(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    const moejit_route_align_spec *spec = &mjt_route_align_shapes[0];
    char arch[16];
    assert_int_equal(moejit_ctx_device_arch(mjt_gpu_ctx, arch, sizeof arch), MOEJIT_OK);
    const int T = atoi(arch + 3) >= 90 ? 64 : 8;
    check_batch(&rng, spec, 4); /* loads the module */
    const int E = spec->route.num_experts, W = spec->route.topk + spec->route.shared_slots;
    int64_t cap;
    assert_int_equal(moejit_route_align_capacity(spec, T, &cap), MOEJIT_OK);
    void *logits = mjt_dev_alloc(4 * (size_t)T * (size_t)E);
    float *bias = mjt_dev_alloc(4 * (size_t)E);
    mjt_dev_fill(logits, 0x3c, 4 * (size_t)T * (size_t)E);
    mjt_dev_fill(bias, 0, 4 * (size_t)E);
    route_out o = route_out_new((size_t)T * (size_t)W);
    mjt_align_bufs maps = mjt_align_bufs_new(E + spec->route.shared_slots, spec->block_size, cap, T * W, 1);
    for (int tokens = 4; tokens <= T; tokens += T - 4) {
        moejit_stats before, after;
        assert_int_equal(moejit_ctx_stats(mjt_gpu_ctx, &before), MOEJIT_OK);
        moejit_route_align_args a = {
            .route = {.logits = logits, .bias = bias, .ids = o.ids, .weights = o.w, .num_tokens = tokens},
            .align = mjt_align_select(&maps, MJT_ALIGN_ALL, cap)};
        assert_int_equal(moejit_route_align(mjt_gpu_ctx, spec, &a, NULL), MOEJIT_OK);
        mjt_sync();
        assert_int_equal(moejit_ctx_stats(mjt_gpu_ctx, &after), MOEJIT_OK);
        assert_int_equal(after.launches - before.launches, 1);
        assert_int_equal(after.compiles, before.compiles);
    }
    mjt_align_bufs_free(&maps);
    mjt_dev_free(o.ids), mjt_dev_free(o.w), mjt_dev_free(logits), mjt_dev_free(bias);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_align_matches_route_then_align),
        cmocka_unit_test(test_fused_is_one_launch),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
