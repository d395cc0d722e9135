/* capacity without a GPU: spec and argument validation (a specific status, a message naming the
 * field and value, nothing compiled or launched), Megatron's capacity formula (its double
 * rounding included), names and generated source, the reference against a brute force written
 * here (every id dtype, both policies, ties, hot experts, -1 and ids that are no expert, NaN and
 * signed zeros, shared slots left alone, T = 0), the CLI and manifests, and NVRTC compiles. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "capacity_cases.h"
#include "ops/capacity/capacity.h"
#include "support.h"

static moejit_kernel_desc desc_of(int E, int K, int S, int dtype, int policy)
{
    moejit_kernel_desc x = {.op = MOEJIT_OP_CAPACITY};
    x.capacity = (moejit_capacity_spec){.num_experts = E, .topk = K, .shared_slots = S,
                                        .id_dtype = (moejit_index_dtype)dtype, .policy = (moejit_drop_policy)policy};
    return x;
}

static void test_bad_specs(void **state)
{
    (void)state;
    static const struct {
        int E, K, S, dtype, policy;
        moejit_status st;
        const char *needle;
    } cases[] = {
        {0, 8, 0, 0, 0, MOEJIT_ERR_INVALID_SPEC, "capacity spec: num_experts = 0 must be >= 1"},
        {-4, 8, 0, 0, 0, MOEJIT_ERR_INVALID_SPEC, "capacity spec: num_experts = -4 must be >= 1"},
        {4097, 8, 0, 0, 0, MOEJIT_ERR_UNSUPPORTED, "capacity spec: num_experts = 4097 exceeds the maximum 4096"},
        {64, 0, 0, 0, 0, MOEJIT_ERR_INVALID_SPEC, "capacity spec: topk = 0 must be >= 1"},
        {64, 65, 0, 0, 0, MOEJIT_ERR_UNSUPPORTED, "capacity spec: topk = 65 exceeds the maximum 64"},
        {64, 8, -1, 0, 0, MOEJIT_ERR_INVALID_SPEC, "capacity spec: shared_slots = -1 must be >= 0"},
        {64, 8, 65, 0, 0, MOEJIT_ERR_UNSUPPORTED, "capacity spec: shared_slots = 65 exceeds the maximum 64"},
        {64, 8, 0, 3, 0, MOEJIT_ERR_INVALID_SPEC,
         "capacity spec: id_dtype = 3 is not a moejit_index_dtype (0 int32, 1 int64, 2 int16)"},
        {64, 8, 0, 0, 2, MOEJIT_ERR_INVALID_SPEC,
         "capacity spec: policy = 2 is not a moejit_drop_policy (0 probs, 1 position)"},
        {64, 8, 0, 0, -1, MOEJIT_ERR_INVALID_SPEC, "capacity spec: policy = -1 is not a moejit_drop_policy"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const moejit_kernel_desc d = desc_of(cases[i].E, cases[i].K, cases[i].S, cases[i].dtype, cases[i].policy);
        const moejit_status st = moejit_validate(&d);
        if (st != cases[i].st || !strstr(moejit_last_error(NULL), cases[i].needle))
            fail_msg("case %zu: %s: \"%s\" (wanted %s: \"%s\")", i, moejit_status_str(st), moejit_last_error(NULL),
                     moejit_status_str(cases[i].st), cases[i].needle);
        char *src = (char *)1;
        assert_int_equal(moejit_source(NULL, &d, &src, NULL), cases[i].st);
        assert_null(src);
    }
    static const int good[][5] = {{1, 1, 0, 0, 0}, {4096, 64, 64, 1, 1}, {64, 8, 0, 2, 0}, {8, 2, 1, 0, 1}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const moejit_kernel_desc d = desc_of(good[i][0], good[i][1], good[i][2], good[i][3], good[i][4]);
        if (moejit_validate(&d) != MOEJIT_OK) fail_msg("good case %zu: %s", i, moejit_last_error(NULL));
    }
    moejit_kernel_desc d = desc_of(64, 8, 0, 0, 0);
    d.capacity.reserved[2] = 5;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "capacity spec: reserved[2] = 0x5 must be 0");
}

static void test_names_and_source(void **state)
{
    (void)state;
    char name[96];
    moejit_kernel_desc d = desc_of(64, 8, 1, MOEJIT_INDEX_INT64, MOEJIT_DROP_PROBS);
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_capacity_probs_e64_k8_s1_i64");
    d = desc_of(128, 2, 0, MOEJIT_INDEX_INT16, MOEJIT_DROP_POSITION);
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_capacity_position_e128_k2_s0_i16");
    char *src = NULL;
    assert_int_equal(moejit_source(NULL, &d, &src, NULL), MOEJIT_OK);
    static const char *const needles[] = {
        "static constexpr int kExperts = 128;", "static constexpr int kTopK = 2;", "static constexpr int kShared = 0;",
        "typedef short Id;", "static constexpr bool kByProbs = false;",
        "moejit_capacity_position_e128_k2_s0_i16(const mj::CapacityParams p)", "mj::pdl_begin();"};
    for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++)
        if (!strstr(src, needles[i])) fail_msg("the source lacks \"%s\"", needles[i]);
    moejit_free(src);
}

/* Megatron's get_capacity: math.ceil((num_tokens / num_experts) * capacity_factor) in doubles, so
 * (25 / 11) · 2.2 = 5.000000000000001 gives 6 where exact arithmetic gives 5; then min_capacity. */
static void test_capacity_of(void **state)
{
    (void)state;
    static const struct {
        int64_t T;
        int K, E;
        double f;
        int min;
        int32_t want;
    } cases[] = {
        {4096, 8, 64, 1.0, 0, 512}, {4096, 8, 64, 1.25, 0, 640}, {7, 2, 3, 1.0, 0, 5},  {1000, 1, 7, 0.3, 0, 43},
        {25, 1, 11, 2.2, 0, 6},     {50, 1, 11, 1.1, 0, 6},      {1, 1, 4096, 0.5, 0, 1}, {1, 1, 4096, 0.5, 4, 4},
        {0, 8, 64, 1.0, 0, 0},      {0, 8, 64, 1.0, 3, 3},       {37, 6, 60, 1.1, 2, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t c = -1;
        assert_int_equal(moejit_capacity_of(cases[i].T, cases[i].K, cases[i].E, cases[i].f, cases[i].min, &c), MOEJIT_OK);
        if (c != cases[i].want) fail_msg("case %zu: capacity %d, wanted %d", i, c, cases[i].want);
    }
    int32_t c;
    mjt_expect_error(moejit_capacity_of(10, 8, 64, 0.0, 0, &c), MOEJIT_ERR_INVALID_ARGUMENT,
                     "moejit_capacity_of: capacity_factor = 0 must be finite and > 0");
    mjt_expect_error(moejit_capacity_of(10, 8, 64, NAN, 0, &c), MOEJIT_ERR_INVALID_ARGUMENT,
                     "capacity_factor = nan must be finite and > 0");
    mjt_expect_error(moejit_capacity_of(10, 8, 64, -1.0, 0, &c), MOEJIT_ERR_INVALID_ARGUMENT,
                     "capacity_factor = -1 must be finite and > 0");
    mjt_expect_error(moejit_capacity_of(-1, 8, 64, 1.0, 0, &c), MOEJIT_ERR_INVALID_ARGUMENT,
                     "moejit_capacity_of: num_tokens = -1 must be >= 0");
    mjt_expect_error(moejit_capacity_of(10, 0, 64, 1.0, 0, &c), MOEJIT_ERR_INVALID_ARGUMENT, "topk = 0 must be >= 1");
    mjt_expect_error(moejit_capacity_of(10, 8, 0, 1.0, 0, &c), MOEJIT_ERR_INVALID_ARGUMENT,
                     "num_experts = 0 must be >= 1");
    mjt_expect_error(moejit_capacity_of(10, 8, 64, 1.0, -2, &c), MOEJIT_ERR_INVALID_ARGUMENT,
                     "min_capacity = -2 must be >= 0");
    mjt_expect_error(moejit_capacity_of(1 << 20, 64, 1, 1e6, 0, &c), MOEJIT_ERR_UNSUPPORTED, "exceeds 2147483647");
    mjt_expect_error(moejit_capacity_of(10, 8, 64, 1.0, 0, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                     "moejit_capacity_of: capacity is NULL");
}

static void test_bad_args(void **state)
{
    (void)state;
    const moejit_capacity_spec s = {.num_experts = 16, .topk = 2};
    int32_t ids[8] = {0}, cnt[16];
    float w[8] = {0};
    const moejit_capacity_args good = {.ids = ids, .weights = w, .num_tokens = 4, .capacity_factor = 1.0};
    assert_int_equal(moejit_capacity_reference(&s, &good), MOEJIT_OK);
    static const struct {
        int field;
        moejit_status st;
        const char *needle;
    } cases[] = {
        {0, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: num_tokens = -1 must be >= 0"},
        {1, MOEJIT_ERR_UNSUPPORTED, "capacity args: num_tokens = 1073741824 × topk = 2 slots exceed 2147483647"},
        {2, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: neither capacity nor capacity_factor is set"},
        {3, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: capacity = 3 and capacity_factor = 1 are both set"},
        {4, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: capacity = -3 must be >= 0"},
        {5, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: capacity_factor = inf must be finite and > 0"},
        {6, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: min_capacity = 2 applies to capacity_factor only"},
        {7, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: ids is NULL"},
        {8, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: weights is NULL"},
        {9, MOEJIT_ERR_INVALID_ARGUMENT, "is not aligned to 4 bytes"},
        {10, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: kept = "},
        {11, MOEJIT_ERR_UNSUPPORTED, "capacity args: reserved[1] = 0x1 must be 0"},
        {12, MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: min_capacity = -1 must be >= 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moejit_capacity_args a = good;
        switch (cases[i].field) {
        case 0: a.num_tokens = -1; break;
        case 1: a.num_tokens = 1 << 30; break;
        case 2: a.capacity_factor = 0; break;
        case 3: a.capacity = 3; break;
        case 4: a.capacity = -3; break;
        case 5: a.capacity_factor = INFINITY; break;
        case 6: a.capacity_factor = 0, a.capacity = 4, a.min_capacity = 2; break;
        case 7: a.ids = NULL; break;
        case 8: a.weights = NULL; break;
        case 9: a.ids = (char *)ids + 2; break;
        case 10: a.kept = (int32_t *)((char *)cnt + 1); break;
        case 11: a.reserved[1] = 1; break;
        case 12: a.min_capacity = -1; break;
        }
        mjt_expect_error(moejit_capacity_reference(&s, &a), cases[i].st, cases[i].needle);
    }
    mjt_expect_error(moejit_capacity_reference(&s, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "capacity args: args is NULL");
    mjt_expect_error(moejit_capacity_reference(NULL, &good), MOEJIT_ERR_INVALID_ARGUMENT, "capacity spec: spec is NULL");
    /* the launch checks the same before anything compiles or runs */
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    moejit_capacity_args a = good;
    a.capacity = 2;
    mjt_expect_error(moejit_capacity(ctx, &s, &a, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "are both set");
    mjt_expect_error(moejit_capacity(NULL, &s, &good, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "moejit_capacity: ctx is NULL");
    a = good;
    a.num_tokens = 0; /* nothing to do and no count wanted: no launch, no compile */
    assert_int_equal(moejit_capacity(ctx, &s, &a, NULL), MOEJIT_OK);
    mjt_expect_nothing_ran(ctx, dir);
}

/* One batch: the reference against the brute force, arrays and counts in full. */
static void check_one(mjt_rng *rng, const moejit_capacity_spec *s, int64_t T, capt_kind kind, double factor,
                      int32_t capacity, int32_t min_capacity)
{
    void *ids, *want_ids;
    float *w, *want_w;
    capt_make(rng, kind, s, T, &ids, &w);
    capt_make(rng, kind, s, T, &want_ids, &want_w); /* buffers of the right size */
    const int E = s->num_experts;
    int32_t *cnt = malloc(sizeof *cnt * (size_t)E), *kept = malloc(sizeof *kept * (size_t)E),
            *want_cnt = malloc(sizeof *cnt * (size_t)E), *want_kept = malloc(sizeof *kept * (size_t)E);
    assert_true(cnt && kept && want_cnt && want_kept);
    memset(cnt, CAPT_POISON, sizeof *cnt * (size_t)E), memset(kept, CAPT_POISON, sizeof *kept * (size_t)E);
    int32_t C = capacity;
    if (!C) assert_int_equal(moejit_capacity_of(T, s->topk, E, factor, min_capacity, &C), MOEJIT_OK);
    capt_brute(s, T, C, ids, w, want_ids, want_w, want_cnt, want_kept);
    const moejit_capacity_args a = {.ids = ids, .weights = w, .num_tokens = T, .capacity_factor = capacity ? 0 : factor,
                                    .capacity = capacity, .min_capacity = capacity ? 0 : min_capacity,
                                    .tokens_per_expert = cnt, .kept = kept};
    if (moejit_capacity_reference(s, &a) != MOEJIT_OK) fail_msg("reference: %s", moejit_last_error(NULL));
    char what[160];
    snprintf(what, sizeof what, "E=%d K=%d S=%d ids=%d policy=%d T=%lld kind=%d C=%d", E, s->topk, s->shared_slots,
             (int)s->id_dtype, (int)s->policy, (long long)T, (int)kind, C);
    capt_compare(s, T, ids, w, want_ids, want_w, what);
    capt_compare_counts(E, cnt, want_cnt, "tokens_per_expert", what);
    capt_compare_counts(E, kept, want_kept, "kept", what);
    free(ids), free(w), free(want_ids), free(want_w), free(cnt), free(kept), free(want_cnt), free(want_kept);
}

static void test_reference_vs_brute(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int shapes[][3] = {{8, 2, 0}, {16, 4, 1}, {64, 8, 2}, {3, 5, 0}, {1, 1, 0}, {60, 6, 1}, {128, 1, 0}};
    static const int64_t ts[] = {1, 7, 64, 300};
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (int d = 0; d < 3; d++)
            for (int pol = 0; pol < 2; pol++) {
                const moejit_capacity_spec s = {.num_experts = shapes[sh][0], .topk = shapes[sh][1],
                                                .shared_slots = shapes[sh][2], .id_dtype = (moejit_index_dtype)d,
                                                .policy = (moejit_drop_policy)pol};
                for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++)
                    for (int kind = 0; kind < CAPT_KINDS; kind++) {
                        check_one(&rng, &s, ts[t], (capt_kind)kind, 1.0, 0, 0);
                        check_one(&rng, &s, ts[t], (capt_kind)kind, 0.37, 0, 0);
                        check_one(&rng, &s, ts[t], (capt_kind)kind, 0.1, 0, 2);
                        check_one(&rng, &s, ts[t], (capt_kind)kind, 0, 1, 0);
                        check_one(&rng, &s, ts[t], (capt_kind)kind, 0, 3, 0);
                    }
            }
}

/* T = 0: the counts are zeros; the ids are not read. Counts alone, and no counts. */
static void test_empty_and_counts(void **state)
{
    (void)state;
    const moejit_capacity_spec s = {.num_experts = 5, .topk = 2, .policy = MOEJIT_DROP_POSITION};
    int32_t cnt[5], kept[5];
    memset(cnt, CAPT_POISON, sizeof cnt), memset(kept, CAPT_POISON, sizeof kept);
    const moejit_capacity_args a = {.num_tokens = 0, .capacity_factor = 1.0, .tokens_per_expert = cnt, .kept = kept};
    assert_int_equal(moejit_capacity_reference(&s, &a), MOEJIT_OK);
    for (int e = 0; e < 5; e++) assert_int_equal(cnt[e], 0), assert_int_equal(kept[e], 0);
    /* a hand-checked batch: expert 1 takes 4 slots, C = 2 */
    int32_t ids[] = {1, 0, 1, 4, 1, -1, 1, 7};
    float w[] = {0.1f, 0.9f, 0.4f, 0.5f, 0.4f, 0.2f, 0.3f, 0.3f};
    moejit_capacity_spec sp = s;
    sp.policy = MOEJIT_DROP_PROBS;
    const moejit_capacity_args b = {.ids = ids, .weights = w, .num_tokens = 4, .capacity = 2,
                                    .tokens_per_expert = cnt, .kept = kept};
    assert_int_equal(moejit_capacity_reference(&sp, &b), MOEJIT_OK);
    static const int32_t want_ids[] = {-1, 0, 1, 4, 1, -1, -1, 7}; /* 0.4 and 0.4 stay, the lower one first */
    assert_memory_equal(ids, want_ids, sizeof ids);
    assert_true(w[0] == 0.0f && w[6] == 0.0f && w[2] == 0.4f && w[7] == 0.3f);
    static const int32_t want_cnt[] = {1, 4, 0, 0, 1}, want_kept[] = {1, 2, 0, 0, 1};
    assert_memory_equal(cnt, want_cnt, sizeof cnt);
    assert_memory_equal(kept, want_kept, sizeof kept);
    int32_t ids2[] = {1, 0, 1, 4, 1, -1, 1, 7};
    float w2[] = {0.1f, 0.9f, 0.4f, 0.5f, 0.4f, 0.2f, 0.3f, 0.3f};
    const moejit_capacity_args c = {.ids = ids2, .weights = w2, .num_tokens = 4, .capacity = 2};
    assert_int_equal(moejit_capacity_reference(&s, &c), MOEJIT_OK); /* position: the last two of expert 1 go */
    static const int32_t want_pos[] = {1, 0, 1, 4, -1, -1, -1, 7};
    assert_memory_equal(ids2, want_pos, sizeof ids2);
}


/* ---- pad to capacity (align's expert_capacity) and what permute and combine make of it ------------ */

static void align_capped_one(mjt_rng *rng, int E, int B, int C, moejit_index_dtype d, int64_t T, int K)
{
    const moejit_align_spec spec = {.num_experts = E, .block_size = B, .id_dtype = d, .expert_capacity = C};
    const int64_t N = T * K;
    void *ids = mjt_align_draw_ids(rng, &spec, 0, N);
    int64_t cap;
    assert_int_equal(moejit_align_capacity(&spec, T, K, &cap), MOEJIT_OK);
    assert_int_equal(cap, (int64_t)E * ((C + B - 1) / B * B));
    mjt_align_bufs got = mjt_align_bufs_new(E, B, cap, N, 0), want = mjt_align_bufs_new(E, B, cap, N, 0);
    mjt_align_bufs_poison(&got), mjt_align_bufs_poison(&want);
    capt_align_brute(&spec, ids, N, &want);
    const moejit_align_args a = {.ids = ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&got, MJT_ALIGN_ALL, cap)};
    if (moejit_align_reference(&spec, &a) != MOEJIT_OK) fail_msg("align reference: %s", moejit_last_error(NULL));
    char what[128];
    snprintf(what, sizeof what, "align E=%d B=%d C=%d ids=%d T=%lld K=%d", E, B, C, (int)d, (long long)T, K);
    capt_align_compare_host(&got, &want, what);
    mjt_align_bufs_free(&got), mjt_align_bufs_free(&want), free(ids);
}

static void test_align_pad_to_capacity(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int shapes[][3] = {{8, 1, 3}, {8, 4, 3}, {16, 16, 40}, {64, 8, 1}, {5, 2, 7}, {256, 64, 130}};
    static const int64_t ts[] = {0, 1, 9, 100, 700};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int d = 0; d < 3; d++)
            for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++)
                align_capped_one(&rng, shapes[i][0], shapes[i][1], shapes[i][2], (moejit_index_dtype)d, ts[t], 4);
    /* errors: a negative capacity, and one that pads past int32 */
    moejit_align_spec spec = {.num_experts = 8, .block_size = 4, .expert_capacity = -1};
    moejit_kernel_desc desc = {.op = MOEJIT_OP_ALIGN, .align = spec};
    mjt_expect_error(moejit_validate(&desc), MOEJIT_ERR_INVALID_SPEC,
                     "align spec: expert_capacity = -1 must be >= 0 (0: no padding to capacity)");
    int64_t cap;
    spec.expert_capacity = 1 << 30;
    mjt_expect_error(moejit_align_capacity(&spec, 4, 2, &cap), MOEJIT_ERR_UNSUPPORTED,
                     "align spec: expert_capacity = 1073741824 pads 8 experts to 8589934592 rows, more than 2147483647");
    /* one kernel for every capacity: the capacity is no part of the shape */
    char a[96], b[96];
    desc.align.expert_capacity = 0;
    assert_int_equal(moejit_kernel_name(&desc, a, sizeof a), MOEJIT_OK);
    desc.align.expert_capacity = 77;
    assert_int_equal(moejit_kernel_name(&desc, b, sizeof b), MOEJIT_OK);
    assert_string_equal(a, b);
}

/* route → capacity → align (pad to capacity) → permute → combine, and their backward, on the
 * references: padding rows of permute are zero, a dropped (t, k) (id -1, slot -1) adds nothing to
 * combine, combine_backward's grad_y is zero on padding rows, permute_backward takes nothing from
 * them. The sums are formed here in combine's order (f32 fused multiply-adds). */
static void test_chain_honours_drops(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    enum { E = 8, K = 2, T = 40, H = 3, B = 4 };
    for (int pol = 0; pol < 2; pol++) {
        const moejit_capacity_spec cs = {.num_experts = E, .topk = K, .policy = (moejit_drop_policy)pol};
        void *idsv;
        float *w;
        capt_make(&rng, CAPT_ROUTE, &cs, T, &idsv, &w);
        int32_t *ids = idsv;
        int32_t C;
        assert_int_equal(moejit_capacity_of(T, K, E, 0.5, 0, &C), MOEJIT_OK);
        const moejit_capacity_args ca = {.ids = ids, .weights = w, .num_tokens = T, .capacity_factor = 0.5};
        assert_int_equal(moejit_capacity_reference(&cs, &ca), MOEJIT_OK);
        int dropped = 0;
        for (int i = 0; i < T * K; i++) dropped += ids[i] < 0;
        assert_true(dropped > 0); /* skewed ids overflow half the mean load */
        const moejit_align_spec as = {.num_experts = E, .block_size = B, .expert_capacity = C};
        int64_t R;
        assert_int_equal(moejit_align_capacity(&as, T, K, &R), MOEJIT_OK);
        mjt_align_bufs m = mjt_align_bufs_new(E, B, R, T * K, 0);
        mjt_align_bufs_poison(&m);
        const moejit_align_args aa = {.ids = ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&m, MJT_ALIGN_ALL, R)};
        assert_int_equal(moejit_align_reference(&as, &aa), MOEJIT_OK);
        const int32_t *sorted = m.buf[2], *slot_of = m.buf[5];
        for (int i = 0; i < T * K; i++) assert_true((ids[i] < 0) == (slot_of[i] < 0)); /* capacity already held */
        float x[T * H], *y = malloc(sizeof *y * (size_t)R * H), out[T * H];
        for (int i = 0; i < T * H; i++) x[i] = (float)mjt_normal(&rng);
        const moejit_permute_spec ps = {.hidden = H};
        const moejit_permute_args pa = {.x = x, .sorted_ids = sorted, .out = y, .num_tokens = T, .topk = K, .num_rows = R};
        assert_int_equal(moejit_permute_reference(&ps, &pa), MOEJIT_OK);
        for (int64_t r = 0; r < R; r++)
            for (int h = 0; h < H; h++) {
                const float want = sorted[r] < T * K ? x[sorted[r] / K * H + h] : 0.0f;
                if (y[r * H + h] != want) fail_msg("permute row %lld: %g, wanted %g", (long long)r, y[r * H + h], want);
            }
        const moejit_combine_spec cb = {.hidden = H};
        const moejit_combine_args cma = {.y = y, .slot_of = slot_of, .weights = w, .out = out, .num_tokens = T,
                                         .topk = K, .num_rows = R};
        assert_int_equal(moejit_combine_reference(&cb, &cma), MOEJIT_OK);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                float acc = 0.0f;
                for (int k = 0; k < K; k++)
                    if (slot_of[t * K + k] >= 0) acc = fmaf(w[t * K + k], y[(int64_t)slot_of[t * K + k] * H + h], acc);
                if (out[t * H + h] != acc) fail_msg("combine token %d: %g, wanted %g", t, out[t * H + h], acc);
            }
        /* backward: grad_y zero on padding rows, grad_x from the kept slots only */
        float *gy = malloc(sizeof *gy * (size_t)R * H), gw[T * K], gx[T * H], go[T * H];
        for (int i = 0; i < T * H; i++) go[i] = (float)mjt_normal(&rng);
        const moejit_combine_backward_spec cbs = {.hidden = H};
        const moejit_combine_backward_args cba = {.grad_out = go, .y = y, .slot_of = slot_of, .weights = w,
                                                  .sorted_ids = sorted, .grad_y = gy, .grad_weights = gw,
                                                  .num_tokens = T, .topk = K, .num_rows = R};
        assert_int_equal(moejit_combine_backward_reference(&cbs, &cba), MOEJIT_OK);
        for (int64_t r = 0; r < R; r++)
            if (sorted[r] >= T * K)
                for (int h = 0; h < H; h++) assert_true(gy[r * H + h] == 0.0f);
        for (int i = 0; i < T * K; i++)
            if (slot_of[i] < 0) assert_true(gw[i] == 0.0f);
        const moejit_permute_backward_spec pbs = {.hidden = H};
        const moejit_permute_backward_args pba = {.grad_out = gy, .slot_of = slot_of, .grad_x = gx, .num_tokens = T,
                                                  .topk = K, .num_rows = R};
        assert_int_equal(moejit_permute_backward_reference(&pbs, &pba), MOEJIT_OK);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                float acc = 0.0f;
                for (int k = 0; k < K; k++)
                    if (slot_of[t * K + k] >= 0) acc = fmaf(gy[(int64_t)slot_of[t * K + k] * H + h], 1.0f, acc);
                if (gx[t * H + h] != acc) fail_msg("permute_backward token %d: %g, wanted %g", t, gx[t * H + h], acc);
            }
        free(y), free(gy), free(idsv), free(w);
        mjt_align_bufs_free(&m);
    }
}

/* ---- CLI and manifests ----------------------------------------------------------------------------- */

static char g_out[1 << 18];
#define CLI(...) mjt_cli(NULL, g_out, sizeof g_out, __VA_ARGS__, (const char *)NULL)
#define EXPECT_OUTPUT(needle)                                                                              \
    do {                                                                                                  \
        if (!strstr(g_out, needle)) fail_msg("output lacks \"%s\":\n%s", needle, g_out);                   \
    } while (0)

static void test_cli(void **state)
{
    (void)state;
    assert_int_equal(CLI("source", "--op", "capacity", "--experts", "64", "--topk", "8", "--shared-slots", "1",
                         "--id-dtype", "int64"), 0);
    EXPECT_OUTPUT("// Module: moejit_capacity_probs_e64_k8_s1_i64\n");
    EXPECT_OUTPUT("static constexpr bool kByProbs = true;");
    assert_int_equal(CLI("source", "--op", "capacity", "--experts", "64", "--topk", "8", "--drop-policy", "position"), 0);
    EXPECT_OUTPUT("// Module: moejit_capacity_position_e64_k8_s0_i32\n");
    assert_int_equal(CLI("source", "--op", "capacity", "--experts", "64", "--topk", "8", "--drop-policy", "sorted"), 2);
    EXPECT_OUTPUT("--drop-policy: \"sorted\" is not one of probs, position");
    assert_int_equal(CLI("source", "--op", "capacity", "--experts", "64"), 2);
    EXPECT_OUTPUT("--topk is required with --op capacity");
    assert_int_equal(CLI("source", "--op", "capacity", "--experts", "64", "--topk", "8", "--block-size", "16"), 2);
    EXPECT_OUTPUT("--block-size does not apply to --op capacity");
    assert_int_equal(CLI("source", "--experts", "64", "--topk", "8", "--drop-policy", "probs"), 2);
    EXPECT_OUTPUT("--drop-policy does not apply to --op route");
    assert_int_equal(CLI("source", "--help"), 0);
    EXPECT_OUTPUT("--drop-policy");

    char dir[4096], path[4200], out[4200];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("source", "--op", "capacity", "--experts", "64,128", "--topk", "8", "--drop-policy",
                         "probs,position", "--out", dir), 0);
    assert_int_equal(mjt_count_files(dir), 4);
    snprintf(path, sizeof path, "%s/m.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"kernels\": [\n"
          " {\"op\": \"capacity\", \"num_experts\": 64, \"topk\": 8, \"policy\": \"position\", \"id_dtype\": \"int16\"},\n"
          " {\"op\": \"capacity\", \"num_experts\": 256, \"topk\": 8, \"shared_slots\": 1},\n"
          " {\"op\": \"capacity\", \"num_experts\": 256, \"topk\": 8, \"policy\": \"sorted\"}\n"
          "]}\n", f);
    fclose(f);
    snprintf(out, sizeof out, "%s/out", dir);
    assert_int_equal(CLI("source", "--manifest", path, "--out", out), 1);
    EXPECT_OUTPUT("kernels[2] (capacity): field \"policy\": expected one of \"probs\", \"position\"");
    EXPECT_OUTPUT("moejit_capacity_position_e64_k8_s0_i16.cu");
    EXPECT_OUTPUT("moejit_capacity_probs_e256_k8_s1_i32.cu");
    assert_int_equal(mjt_count_files(out), 2);
    /* prewarm into a cache of its own, for sm_90a (no GPU needed) */
    char cache[4200];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    const int rc = CLI("prewarm", "--op", "capacity", "--experts", "64", "--topk", "8", "--arch", "sm_90a",
                       "--cache-dir", cache);
    if (rc == 0) EXPECT_OUTPUT("moejit_capacity_probs_e64_k8_s0_i32");
    mjt_rmtree(dir);
}

/* ---- the kernel compiles ------------------------------------------------------------------------ */

static void test_kernels_compile(void **state)
{
    (void)state;
    static const int shapes[][5] = {{64, 8, 0, 0, 0}, {64, 8, 0, 1, 1}, {4096, 64, 64, 2, 0},
                                    {8, 2, 1, 2, 1},  {1, 1, 0, 0, 0},  {256, 8, 1, 1, 0}};
    enum { N = sizeof shapes / sizeof shapes[0] };
    moejit_kernel_desc d[N];
    for (int i = 0; i < N; i++) d[i] = desc_of(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4]);
    mjt_expect_compiles(d, N, "sm_90a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_names_and_source),
        cmocka_unit_test(test_capacity_of),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_reference_vs_brute),
        cmocka_unit_test(test_empty_and_counts),
        cmocka_unit_test(test_align_pad_to_capacity),
        cmocka_unit_test(test_chain_honours_drops),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_kernels_compile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
