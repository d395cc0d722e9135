/* GPU: capacity against its C reference on fresh random batches, the counts poisoned first and the
 * whole [T, K+S] arrays compared bit for bit (shared columns and ids of no expert untouched), each
 * batch run twice on fresh copies of its inputs and required bit-identical: both policies, every
 * id dtype, E from 1 to 4096, K up to 64 with shared slots, capacities from the factor (Megatron's
 * formula), given, 0-like small and beyond the count, ties at the threshold, hot experts, hostile
 * ids and weights, batches of many steps (the block scan's carry) and T = 0. Every test skips
 * without a device; MOEJIT_TEST_QUICK thins the sweeps and caps the batches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity_cases.h"
#include "support.h"

/* One batch on the GPU twice against the reference. */
static void run_and_check(mjt_rng *rng, const moejit_capacity_spec *s, int64_t T, capt_kind kind, double factor,
                          int32_t capacity, int32_t min_capacity)
{
    const int E = s->num_experts, W = s->topk + s->shared_slots;
    const size_t id_bytes = (size_t)(T * W) * (size_t)capt_id_bytes(s->id_dtype), w_bytes = (size_t)(T * W) * 4;
    void *ids, *ref_ids, *got_ids = malloc(id_bytes + 8), *first_ids = malloc(id_bytes + 8);
    float *w, *ref_w, *got_w = malloc(w_bytes + 8), *first_w = malloc(w_bytes + 8);
    capt_make(rng, kind, s, T, &ids, &w);
    ref_ids = malloc(id_bytes + 8), ref_w = malloc(w_bytes + 8);
    int32_t *ref_cnt = malloc(4 * (size_t)E), *ref_kept = malloc(4 * (size_t)E), *cnt = malloc(4 * (size_t)E),
            *kept = malloc(4 * (size_t)E), *first_cnt = malloc(4 * (size_t)E), *first_kept = malloc(4 * (size_t)E);
    assert_true(got_ids && first_ids && got_w && first_w && ref_ids && ref_w && ref_cnt && ref_kept && cnt && kept &&
                first_cnt && first_kept);
    memcpy(ref_ids, ids, id_bytes), memcpy(ref_w, w, w_bytes);
    const moejit_capacity_args h = {.ids = ref_ids, .weights = ref_w, .num_tokens = T,
                                    .capacity_factor = capacity ? 0 : factor, .capacity = capacity,
                                    .min_capacity = capacity ? 0 : min_capacity, .tokens_per_expert = ref_cnt,
                                    .kept = ref_kept};
    if (moejit_capacity_reference(s, &h) != MOEJIT_OK) fail_msg("reference: %s", moejit_last_error(NULL));
    void *d_ids = mjt_dev_alloc(id_bytes + 16), *d_w = mjt_dev_alloc(w_bytes + 16);
    int32_t *d_cnt = mjt_dev_alloc(4 * (size_t)E), *d_kept = mjt_dev_alloc(4 * (size_t)E);
    char what[192];
    snprintf(what, sizeof what, "capacity E=%d K=%d S=%d ids=%d policy=%d T=%lld kind=%d factor=%g C=%d min=%d", E,
             s->topk, s->shared_slots, (int)s->id_dtype, (int)s->policy, (long long)T, (int)kind, factor, capacity,
             min_capacity);
    for (int run = 0; run < 2; run++) {
        if (id_bytes) mjt_h2d(d_ids, ids, id_bytes), mjt_h2d(d_w, w, w_bytes);
        mjt_dev_fill(d_cnt, CAPT_POISON, 4 * (size_t)E), mjt_dev_fill(d_kept, CAPT_POISON, 4 * (size_t)E);
        mjt_sync();
        moejit_capacity_args a = h;
        a.ids = T ? d_ids : NULL, a.weights = T ? d_w : NULL, a.tokens_per_expert = d_cnt, a.kept = d_kept;
        const moejit_status st = moejit_capacity(mjt_gpu_ctx, s, &a, NULL);
        if (st != MOEJIT_OK) fail_msg("%s: %s: %s", what, moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
        mjt_sync();
        if (id_bytes) mjt_d2h(got_ids, d_ids, id_bytes), mjt_d2h(got_w, d_w, w_bytes);
        mjt_d2h(cnt, d_cnt, 4 * (size_t)E), mjt_d2h(kept, d_kept, 4 * (size_t)E);
        capt_compare(s, T, got_ids, got_w, ref_ids, ref_w, what);
        capt_compare_counts(E, cnt, ref_cnt, "tokens_per_expert", what);
        capt_compare_counts(E, kept, ref_kept, "kept", what);
        if (run == 0) {
            memcpy(first_ids, got_ids, id_bytes), memcpy(first_w, got_w, w_bytes);
            memcpy(first_cnt, cnt, 4 * (size_t)E), memcpy(first_kept, kept, 4 * (size_t)E);
        } else { /* bit-identical run to run (implied by the above; stated) */
            if (memcmp(first_ids, got_ids, id_bytes) || memcmp(first_w, got_w, w_bytes) ||
                memcmp(first_cnt, cnt, 4 * (size_t)E) || memcmp(first_kept, kept, 4 * (size_t)E))
                fail_msg("%s: the second run differs from the first", what);
        }
    }
    mjt_dev_free(d_ids), mjt_dev_free(d_w), mjt_dev_free(d_cnt), mjt_dev_free(d_kept);
    free(ids), free(w), free(ref_ids), free(ref_w), free(got_ids), free(got_w), free(first_ids), free(first_w);
    free(ref_cnt), free(ref_kept), free(cnt), free(kept), free(first_cnt), free(first_kept);
}

static void prewarm(const moejit_capacity_spec *specs, size_t n)
{
    moejit_kernel_desc *d = calloc(n, sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) d[i].op = MOEJIT_OP_CAPACITY, d[i].capacity = specs[i];
    const moejit_status st = moejit_prewarm(mjt_gpu_ctx, d, n, NULL, NULL);
    if (st != MOEJIT_OK) fail_msg("prewarm: %s: %s", moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    free(d);
}

/* Route-like shapes, every dtype and policy, batches of one step to many, every kind of input,
 * capacities from the factor (1.0, 1.25, 0.3 with a minimum) and given (1, 2, beyond every count). */
static void test_sweep(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    static const int shapes[][3] = {{8, 2, 0}, {64, 8, 1}, {128, 8, 0}, {60, 6, 2}, {256, 8, 1}};
    enum { NS = sizeof shapes / sizeof shapes[0] };
    moejit_capacity_spec specs[NS * 6];
    size_t n = 0;
    for (int i = 0; i < NS; i++)
        for (int d = 0; d < 3; d++)
            for (int pol = 0; pol < 2; pol++)
                specs[n++] = (moejit_capacity_spec){.num_experts = shapes[i][0], .topk = shapes[i][1],
                                                    .shared_slots = shapes[i][2], .id_dtype = (moejit_index_dtype)d,
                                                    .policy = (moejit_drop_policy)pol};
    prewarm(specs, n);
    const int64_t ts[] = {0, 1, 5, 300, 1000, mjt_quick_cap(9000, 1200)};
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (size_t i = 0; i < n; i++) {
        if (!mjt_keep((int)i, 4)) continue;
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++)
            for (int kind = 0; kind < CAPT_KINDS; kind++) {
                run_and_check(&rng, &specs[i], ts[t], (capt_kind)kind, 1.0, 0, 0);
                run_and_check(&rng, &specs[i], ts[t], (capt_kind)kind, 1.25, 0, 0);
                if (mjt_keep(kind, 2)) {
                    run_and_check(&rng, &specs[i], ts[t], (capt_kind)kind, 0.3, 0, 3);
                    run_and_check(&rng, &specs[i], ts[t], (capt_kind)kind, 0, 1, 0);
                    run_and_check(&rng, &specs[i], ts[t], (capt_kind)kind, 0, 2, 0);
                    run_and_check(&rng, &specs[i], ts[t], (capt_kind)kind, 0, 1 << 30, 0);
                }
            }
    }
}

/* The edges: one expert, E = 4096, K = 64 with 64 shared slots, hot experts over many steps (every
 * radix level, a long carry), T·K past 2^20. */
static void test_wide(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    static const moejit_capacity_spec specs[] = {
        {.num_experts = 1, .topk = 1, .policy = MOEJIT_DROP_PROBS},
        {.num_experts = 1, .topk = 1, .policy = MOEJIT_DROP_POSITION},
        {.num_experts = 4096, .topk = 8, .shared_slots = 1, .id_dtype = MOEJIT_INDEX_INT64},
        {.num_experts = 4096, .topk = 8, .id_dtype = MOEJIT_INDEX_INT16, .policy = MOEJIT_DROP_POSITION},
        {.num_experts = 64, .topk = 64, .shared_slots = 64, .id_dtype = MOEJIT_INDEX_INT32},
        {.num_experts = 64, .topk = 64, .shared_slots = 64, .id_dtype = MOEJIT_INDEX_INT64,
         .policy = MOEJIT_DROP_POSITION},
        {.num_experts = 16, .topk = 2, .id_dtype = MOEJIT_INDEX_INT64},
        {.num_experts = 16, .topk = 2, .id_dtype = MOEJIT_INDEX_INT32, .policy = MOEJIT_DROP_POSITION},
    };
    enum { N = sizeof specs / sizeof specs[0] };
    prewarm(specs, N);
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int i = 0; i < N; i++) {
        const int64_t big = specs[i].topk == 64 ? 20000 : 600000;
        const int64_t ts[] = {3, 2000, mjt_quick_cap(big, 3000)};
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++)
            for (int kind = 0; kind < CAPT_KINDS; kind++) {
                if (specs[i].num_experts == 4096 && kind != CAPT_ROUTE && kind != CAPT_HOT && t == 2) continue;
                run_and_check(&rng, &specs[i], ts[t], (capt_kind)kind, 1.0, 0, 0);
                run_and_check(&rng, &specs[i], ts[t], (capt_kind)kind, 0.5, 0, 0);
            }
    }
}


/* align with expert_capacity (pad to capacity) against its reference, on every path the host picks
 * for it: onepass (a decode batch too: the small entry is never used with a capacity) and three
 * launches over tiles (more than MJ_ALIGN_ONEPASS_MAX_IDS ids). */
static void align_capped_gpu(mjt_rng *rng, int E, int B, int C, moejit_index_dtype d, int64_t T, int K)
{
    const moejit_align_spec spec = {.num_experts = E, .block_size = B, .id_dtype = d, .expert_capacity = C};
    const int64_t N = T * K;
    void *ids = mjt_align_draw_ids(rng, &spec, 0, N);
    int64_t cap;
    size_t ws_bytes;
    assert_int_equal(moejit_align_capacity(&spec, T, K, &cap), MOEJIT_OK);
    assert_int_equal(moejit_align_workspace_bytes(&spec, T, K, &ws_bytes), MOEJIT_OK);
    const size_t id_bytes = (size_t)N * (size_t)mjt_index_bytes(d);
    void *d_ids = mjt_dev_alloc(id_bytes + 16), *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
    if (id_bytes) mjt_h2d(d_ids, ids, id_bytes);
    mjt_align_bufs dev = mjt_align_bufs_new(E, B, cap, N, 1), ref = mjt_align_bufs_new(E, B, cap, N, 0);
    mjt_align_bufs_poison(&dev), mjt_align_bufs_poison(&ref);
    mjt_sync();
    moejit_align_args a = {.ids = N ? d_ids : NULL, .num_tokens = T, .topk = K,
                           .out = mjt_align_select(&dev, MJT_ALIGN_ALL, cap)};
    a.out.workspace = ws, a.out.workspace_bytes = ws_bytes;
    const moejit_status st = moejit_align(mjt_gpu_ctx, &spec, &a, NULL);
    if (st != MOEJIT_OK) fail_msg("moejit_align: %s: %s", moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    mjt_sync();
    const moejit_align_args h = {.ids = ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&ref, MJT_ALIGN_ALL, cap)};
    assert_int_equal(moejit_align_reference(&spec, &h), MOEJIT_OK);
    char what[128];
    snprintf(what, sizeof what, "align E=%d B=%d C=%d ids=%d T=%lld K=%d ws=%zu", E, B, C, (int)d, (long long)T, K,
             ws_bytes);
    mjt_align_compare(&dev, &ref, what);
    mjt_align_bufs_free(&dev), mjt_align_bufs_free(&ref), mjt_dev_free(d_ids), free(ids);
    if (ws) mjt_dev_free(ws);
}

static void test_align_pad_to_capacity(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    /* E, B, C: small ranges; B = 1; C not a multiple of B; E·round_up(C, B) past 131072 rows
     * (onepass spreads their padding over its grid); the widest E. T·K = 160000 takes the tiles
     * (2000·4 in quick mode: onepass only). */
    static const int shapes[][3] = {{8, 16, 5},    {64, 1, 3},     {256, 64, 130}, {60, 4, 37},
                                    {4096, 16, 40}, {128, 128, 1}, {16, 8, 20000}};
    const int64_t ts[] = {1, 7, 100, 1000, mjt_quick_cap(5000, 1200), mjt_quick_cap(40000, 2000)};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int d = 0; d < 3; d++)
            for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++)
                if (mjt_keep((int)(i + t + (size_t)d), 2))
                    align_capped_gpu(&rng, shapes[i][0], shapes[i][1], shapes[i][2], (moejit_index_dtype)d, ts[t], 4);
}

/* capacity → align (pad to capacity) → permute → combine and both backward ops, all on the GPU,
 * each against its reference on the host copy of its inputs: the kernels honour id -1, slot -1
 * and padding rows bit for bit. */
static void test_chain(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    enum { E = 64, K = 8, H = 96, B = 16 };
    const int64_t T = mjt_quick_cap(3000, 500);
    for (int pol = 0; pol < 2; pol++) {
        const moejit_capacity_spec cs = {.num_experts = E, .topk = K, .policy = (moejit_drop_policy)pol};
        void *idsv;
        float *w;
        capt_make(&rng, CAPT_ROUTE, &cs, T, &idsv, &w);
        const size_t nk = (size_t)(T * K);
        int32_t *d_ids = mjt_dev_alloc(4 * nk), C;
        float *d_w = mjt_dev_alloc(4 * nk);
        mjt_h2d(d_ids, idsv, 4 * nk), mjt_h2d(d_w, w, 4 * nk);
        mjt_sync();
        const moejit_capacity_args ca = {.ids = d_ids, .weights = d_w, .num_tokens = T, .capacity_factor = 0.8};
        assert_int_equal(moejit_capacity(mjt_gpu_ctx, &cs, &ca, NULL), MOEJIT_OK);
        const moejit_capacity_args ha = {.ids = idsv, .weights = w, .num_tokens = T, .capacity_factor = 0.8};
        assert_int_equal(moejit_capacity_reference(&cs, &ha), MOEJIT_OK);
        assert_int_equal(moejit_capacity_of(T, K, E, 0.8, 0, &C), MOEJIT_OK);
        const moejit_align_spec as = {.num_experts = E, .block_size = B, .expert_capacity = C};
        int64_t R;
        size_t ws_bytes;
        assert_int_equal(moejit_align_capacity(&as, T, K, &R), MOEJIT_OK);
        assert_int_equal(moejit_align_workspace_bytes(&as, T, K, &ws_bytes), MOEJIT_OK);
        void *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
        mjt_align_bufs dm = mjt_align_bufs_new(E, B, R, (int64_t)nk, 1), hm = mjt_align_bufs_new(E, B, R, (int64_t)nk, 0);
        mjt_align_bufs_poison(&dm), mjt_align_bufs_poison(&hm);
        moejit_align_args aa = {.ids = d_ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&dm, MJT_ALIGN_ALL, R)};
        aa.out.workspace = ws, aa.out.workspace_bytes = ws_bytes;
        assert_int_equal(moejit_align(mjt_gpu_ctx, &as, &aa, NULL), MOEJIT_OK);
        const moejit_align_args ah = {.ids = idsv, .num_tokens = T, .topk = K, .out = mjt_align_select(&hm, MJT_ALIGN_ALL, R)};
        assert_int_equal(moejit_align_reference(&as, &ah), MOEJIT_OK);
        mjt_sync();
        mjt_align_compare(&dm, &hm, "chain: align after capacity");
        /* permute, combine, backward: f32 rows */
        const size_t xb = (size_t)T * H * 4, yb = (size_t)R * H * 4;
        float *x = malloc(xb), *go = malloc(xb), *y = malloc(yb), *out = malloc(xb), *gy = malloc(yb), *gx = malloc(xb),
              *gw = malloc(4 * nk), *got = malloc(yb > xb ? yb : xb);
        for (int64_t i = 0; i < T * H; i++) x[i] = (float)mjt_normal(&rng), go[i] = (float)mjt_normal(&rng);
        float *dx = mjt_dev_alloc(xb), *dgo = mjt_dev_alloc(xb), *dy = mjt_dev_alloc(yb), *dout = mjt_dev_alloc(xb),
              *dgy = mjt_dev_alloc(yb), *dgx = mjt_dev_alloc(xb), *dgw = mjt_dev_alloc(4 * nk);
        mjt_h2d(dx, x, xb), mjt_h2d(dgo, go, xb);
        mjt_dev_fill(dy, 0x7f, yb), mjt_dev_fill(dgy, 0x7f, yb), mjt_dev_fill(dout, 0x7f, xb), mjt_dev_fill(dgx, 0x7f, xb);
        mjt_sync();
        const moejit_permute_spec ps = {.hidden = H};
        moejit_permute_args pa = {.x = dx, .sorted_ids = dm.buf[2], .out = dy, .num_tokens = T, .topk = K, .num_rows = R};
        assert_int_equal(moejit_permute(mjt_gpu_ctx, &ps, &pa, NULL), MOEJIT_OK);
        pa.x = x, pa.sorted_ids = hm.buf[2], pa.out = y;
        assert_int_equal(moejit_permute_reference(&ps, &pa), MOEJIT_OK);
        mjt_sync();
        mjt_d2h(got, dy, yb);
        if (memcmp(got, y, yb)) fail_msg("chain: permute differs from its reference");
        const moejit_combine_spec cb = {.hidden = H};
        moejit_combine_args cma = {.y = dy, .slot_of = dm.buf[5], .weights = d_w, .out = dout, .num_tokens = T,
                                   .topk = K, .num_rows = R};
        assert_int_equal(moejit_combine(mjt_gpu_ctx, &cb, &cma, NULL), MOEJIT_OK);
        cma.y = y, cma.slot_of = hm.buf[5], cma.weights = w, cma.out = out;
        assert_int_equal(moejit_combine_reference(&cb, &cma), MOEJIT_OK);
        mjt_sync();
        mjt_d2h(got, dout, xb);
        if (memcmp(got, out, xb)) fail_msg("chain: combine differs from its reference");
        const moejit_combine_backward_spec cbs = {.hidden = H};
        moejit_combine_backward_args cba = {.grad_out = dgo, .y = dy, .slot_of = dm.buf[5], .weights = d_w,
                                            .sorted_ids = dm.buf[2], .grad_y = dgy, .grad_weights = dgw,
                                            .num_tokens = T, .topk = K, .num_rows = R};
        assert_int_equal(moejit_combine_backward(mjt_gpu_ctx, &cbs, &cba, NULL), MOEJIT_OK);
        cba.grad_out = go, cba.y = y, cba.slot_of = hm.buf[5], cba.weights = w, cba.sorted_ids = hm.buf[2];
        cba.grad_y = gy, cba.grad_weights = gw;
        assert_int_equal(moejit_combine_backward_reference(&cbs, &cba), MOEJIT_OK);
        mjt_sync();
        mjt_d2h(got, dgy, yb);
        if (memcmp(got, gy, yb)) fail_msg("chain: combine_backward's grad_y differs from its reference");
        mjt_d2h(got, dgw, 4 * nk);
        if (memcmp(got, gw, 4 * nk)) fail_msg("chain: combine_backward's grad_weights differ from its reference");
        const moejit_permute_backward_spec pbs = {.hidden = H};
        moejit_permute_backward_args pba = {.grad_out = dgy, .slot_of = dm.buf[5], .grad_x = dgx, .num_tokens = T,
                                            .topk = K, .num_rows = R};
        assert_int_equal(moejit_permute_backward(mjt_gpu_ctx, &pbs, &pba, NULL), MOEJIT_OK);
        pba.grad_out = gy, pba.slot_of = hm.buf[5], pba.grad_x = gx;
        assert_int_equal(moejit_permute_backward_reference(&pbs, &pba), MOEJIT_OK);
        mjt_sync();
        mjt_d2h(got, dgx, xb);
        if (memcmp(got, gx, xb)) fail_msg("chain: permute_backward differs from its reference");
        mjt_dev_free(dx), mjt_dev_free(dgo), mjt_dev_free(dy), mjt_dev_free(dout), mjt_dev_free(dgy), mjt_dev_free(dgx);
        mjt_dev_free(dgw), mjt_dev_free(d_ids), mjt_dev_free(d_w);
        if (ws) mjt_dev_free(ws);
        free(x), free(go), free(y), free(out), free(gy), free(gx), free(gw), free(got), free(idsv), free(w);
        mjt_align_bufs_free(&dm), mjt_align_bufs_free(&hm);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_wide),
        cmocka_unit_test(test_align_pad_to_capacity),
        cmocka_unit_test(test_chain),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
