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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_wide),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
