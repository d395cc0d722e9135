/* dispatch_layout without a GPU: spec and argument validation (a specific status, a message naming
 * the field and value, nothing compiled or launched), names and generated source through the
 * public API, the batch layout, the reference against a naive computation written here (every id
 * dtype, padding, ids past E, int64 ids that would alias an expert if truncated, repeated ids,
 * T = 0, each output alone), the CLI and manifests, and the kernels compiling with NVRTC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch_layout_cases.h"
#include "ops/dispatch_layout/dispatch_layout.h"
#include "support.h"

static moejit_kernel_desc desc_of(int E, int R, int K, moejit_index_dtype d, int rpn)
{
    moejit_kernel_desc x = {.op = MOEJIT_OP_DISPATCH_LAYOUT};
    x.dispatch_layout = (moejit_dispatch_layout_spec){
        .num_experts = E, .num_ranks = R, .topk = K, .id_dtype = d, .ranks_per_node = rpn};
    return x;
}

static void test_bad_specs(void **state)
{
    (void)state;
    static const struct {
        int E, R, K, dtype, rpn;
        moejit_status st;
        const char *needle;
    } cases[] = {
        {0, 1, 8, 0, 0, MOEJIT_ERR_INVALID_SPEC, "dispatch_layout spec: num_experts = 0 must be >= 1"},
        {-3, 1, 8, 0, 0, MOEJIT_ERR_INVALID_SPEC, "num_experts = -3 must be >= 1"},
        {4161, 1, 8, 0, 0, MOEJIT_ERR_UNSUPPORTED, "dispatch_layout spec: num_experts = 4161 exceeds the maximum 4160"},
        {256, 0, 8, 0, 0, MOEJIT_ERR_INVALID_SPEC, "dispatch_layout spec: num_ranks = 0 must be >= 1"},
        {256, -8, 8, 0, 0, MOEJIT_ERR_INVALID_SPEC, "num_ranks = -8 must be >= 1"},
        {256, 3, 8, 0, 0, MOEJIT_ERR_INVALID_SPEC, "num_ranks = 3 does not divide num_experts = 256"},
        {256, 512, 8, 0, 0, MOEJIT_ERR_INVALID_SPEC, "num_ranks = 512 does not divide num_experts = 256"},
        {256, 8, 0, 0, 0, MOEJIT_ERR_INVALID_SPEC, "dispatch_layout spec: topk = 0 must be >= 1"},
        {256, 8, -1, 0, 0, MOEJIT_ERR_INVALID_SPEC, "topk = -1 must be >= 1"},
        {256, 8, 129, 0, 0, MOEJIT_ERR_UNSUPPORTED, "dispatch_layout spec: topk = 129 exceeds the maximum 128"},
        {256, 8, 8, 3, 0, MOEJIT_ERR_INVALID_SPEC,
         "dispatch_layout spec: id_dtype = 3 is not a moejit_index_dtype (0 int32, 1 int64, 2 int16)"},
        {256, 8, 8, -1, 0, MOEJIT_ERR_INVALID_SPEC, "id_dtype = -1 is not a moejit_index_dtype"},
        {256, 8, 8, 0, -1, MOEJIT_ERR_INVALID_SPEC, "dispatch_layout spec: ranks_per_node = -1 must be >= 0"},
        {256, 8, 8, 0, 3, MOEJIT_ERR_INVALID_SPEC, "dispatch_layout spec: ranks_per_node = 3 does not divide num_ranks = 8"},
        {256, 8, 8, 0, 16, MOEJIT_ERR_INVALID_SPEC, "ranks_per_node = 16 does not divide num_ranks = 8"},
        {48, 12, 8, 0, 0, MOEJIT_ERR_INVALID_SPEC,
         "dispatch_layout spec: ranks_per_node = 0 (the default, 8) does not divide num_ranks = 12"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const moejit_kernel_desc d = desc_of(cases[i].E, cases[i].R, cases[i].K, (moejit_index_dtype)cases[i].dtype,
                                             cases[i].rpn);
        const moejit_status st = moejit_validate(&d);
        if (st != cases[i].st || !strstr(moejit_last_error(NULL), cases[i].needle))
            fail_msg("case %zu: %s: \"%s\" (wanted %s: \"%s\")", i, moejit_status_str(st), moejit_last_error(NULL),
                     moejit_status_str(cases[i].st), cases[i].needle);
        char name[96];
        assert_int_equal(moejit_kernel_name(&d, name, sizeof name), cases[i].st);
        char *src = (char *)1;
        assert_int_equal(moejit_source(NULL, &d, &src, NULL), cases[i].st);
        assert_null(src);
    }
    /* the limits themselves, and the shapes DeepEP has */
    static const int good[][5] = {{1, 1, 1, 0, 0},       {4160, 4160, 128, 2, 1}, {4160, 1, 8, 1, 0},
                                  {256, 8, 8, 1, 0},     {384, 64, 8, 1, 0},      {288, 96, 6, 0, 4},
                                  {48, 12, 8, 0, 4},     {48, 12, 8, 0, 12},      {256, 4, 8, 0, 0},
                                  {256, 2, 100, 0, 2}, {8, 8, 16, 2, 8},      {32, 16, 3, 0, 1}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const moejit_kernel_desc d = desc_of(good[i][0], good[i][1], good[i][2], (moejit_index_dtype)good[i][3], good[i][4]);
        if (moejit_validate(&d) != MOEJIT_OK) fail_msg("good case %zu: %s", i, moejit_last_error(NULL));
        assert_string_equal(moejit_last_error(NULL), "");
    }
    /* reserved words: of the spec and of the descriptor */
    moejit_kernel_desc d = desc_of(256, 8, 8, MOEJIT_INDEX_INT32, 0);
    d.dispatch_layout.reserved[1] = 7;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "dispatch_layout spec: reserved[1] = 0x7 must be 0");
    d = desc_of(256, 8, 8, MOEJIT_INDEX_INT32, 0);
    d.reserved = 1;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "kernel descriptor: reserved = 0x1 must be 0");
}

/* Normalisation: a default and its value are one kernel; names state the shape. */
static void test_names(void **state)
{
    (void)state;
    static const struct {
        int E, R, K, dtype, rpn;
        const char *name;
    } cases[] = {
        {256, 8, 8, MOEJIT_INDEX_INT64, 0, "moejit_dispatch_layout_e256_r8_k8_i64"},
        {256, 8, 8, MOEJIT_INDEX_INT64, 8, "moejit_dispatch_layout_e256_r8_k8_i64"},
        {384, 64, 8, MOEJIT_INDEX_INT32, 0, "moejit_dispatch_layout_e384_r64_k8_i32"},
        {384, 64, 8, MOEJIT_INDEX_INT32, 16, "moejit_dispatch_layout_e384_r64_k8_i32_rpn16"},
        {384, 64, 8, MOEJIT_INDEX_INT32, 1, "moejit_dispatch_layout_e384_r64_k8_i32_rpn1"},
        {256, 4, 6, MOEJIT_INDEX_INT16, 0, "moejit_dispatch_layout_e256_r4_k6_i16"}, /* one node of 4 */
        {256, 4, 6, MOEJIT_INDEX_INT16, 4, "moejit_dispatch_layout_e256_r4_k6_i16"},
        {256, 4, 6, MOEJIT_INDEX_INT16, 2, "moejit_dispatch_layout_e256_r4_k6_i16_rpn2"},
        {4160, 4160, 128, MOEJIT_INDEX_INT32, 1, "moejit_dispatch_layout_e4160_r4160_k128_i32_rpn1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const moejit_kernel_desc d = desc_of(cases[i].E, cases[i].R, cases[i].K, (moejit_index_dtype)cases[i].dtype,
                                             cases[i].rpn);
        char name[96];
        assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
        assert_string_equal(name, cases[i].name);
    }
    const moejit_kernel_desc d = desc_of(256, 8, 8, MOEJIT_INDEX_INT64, 0);
    char tiny[8];
    mjt_expect_error(moejit_kernel_name(&d, tiny, sizeof tiny), MOEJIT_ERR_INVALID_ARGUMENT,
                     "moejit_kernel_name: the name needs 38 bytes, the buffer has 8");
}

static void expect_in(const char *src, const char *needle)
{
    if (!strstr(src, needle)) fail_msg("the source lacks \"%s\"", needle);
}

/* The generated source: every size a constant, both entries, the parameter struct checked against
 * the host's layout, self-contained. */
static void test_source(void **state)
{
    (void)state;
    moejit_kernel_desc d = desc_of(384, 64, 8, MOEJIT_INDEX_INT64, 16);
    char *src = NULL;
    size_t len = 0;
    assert_int_equal(moejit_source(NULL, &d, &src, &len), MOEJIT_OK);
    assert_int_equal(strlen(src), len);
    expect_in(src, "static constexpr int kExperts = 384;");
    expect_in(src, "static constexpr int kRanks = 64;");
    expect_in(src, "static constexpr int kNodes = 4;");
    expect_in(src, "static constexpr int kTopK = 8;");
    expect_in(src, "typedef long long Id;");
    expect_in(src, "__launch_bounds__(128, 1) moejit_dispatch_layout_e384_r64_k8_i64_rpn16_small(const mj::DispatchLayoutParams p)");
    expect_in(src, "__launch_bounds__(1024, 1) moejit_dispatch_layout_e384_r64_k8_i64_rpn16_grid(const mj::DispatchLayoutParams p)");
    char line[160];
    snprintf(line, sizeof line, "static_assert(sizeof(mj_dispatch_layout_params) == %zu,", sizeof(mj_dispatch_layout_params));
    expect_in(src, line);
    snprintf(line, sizeof line, "static_assert(MJ_OFFSETOF(mj_dispatch_layout_params, row_tiles) == %zu,",
             offsetof(mj_dispatch_layout_params, row_tiles));
    expect_in(src, line);
    /* 1 size + 10 offsets of the one parameter struct */
    int checks = 0;
    for (const char *p = src; (p = strstr(p, "host and device layouts differ")); p++) checks++;
    assert_int_equal(checks, 11);
    assert_null(strstr(src, "\n#include"));
    moejit_free(src);
    d = desc_of(8, 2, 3, MOEJIT_INDEX_INT16, 0);
    assert_int_equal(moejit_source(NULL, &d, &src, NULL), MOEJIT_OK);
    expect_in(src, "typedef short Id;");
    expect_in(src, "static constexpr int kNodes = 1;"); /* 2 ranks: one node */
    moejit_free(src);
}

/* The batch layout: one block up to MJ_DL_SMALL_TOKENS tokens, else a grid sized from T and the
 * outputs wanted; nothing at all when nothing is wanted. */
static void test_layout(void **state)
{
    (void)state;
    int32_t *const dev = (int32_t *)0x10000;
    uint8_t *const rows = (uint8_t *)0x30001;
    const moejit_dispatch_layout_spec s = {.num_experts = 384, .num_ranks = 64, .topk = 8};
    moejit_dispatch_layout_args a = {.ids = dev, .num_tokens = 16384, .tokens_per_rank = dev, .tokens_per_node = dev,
                                     .tokens_per_expert = dev, .is_token_in_rank = rows};
    mj_dispatch_layout_shape shape;
    mj_dispatch_layout_layout l;
    mj_dispatch_layout_params p;
    assert_int_equal(mj_dispatch_layout_check_call(&s, &a, &shape, &l, &p), MOEJIT_OK);
    assert_false(l.small);
    /* 12 expert slices of 32, 4 rank slices of 16, 1 node slice (8 nodes), 16 row tiles */
    assert_int_equal(p.expert_blocks, 12);
    assert_int_equal(p.rank_blocks, 4);
    assert_int_equal(p.node_blocks, 1);
    assert_int_equal(p.row_tiles, 16);
    assert_int_equal(l.blocks, 12 + 4 + 1 + 16);
    a.num_tokens = MJ_DL_SMALL_TOKENS;
    assert_int_equal(mj_dispatch_layout_check_call(&s, &a, &shape, &l, &p), MOEJIT_OK);
    assert_true(l.small);
    assert_int_equal(l.blocks, 1);
    a.num_tokens = MJ_DL_SMALL_TOKENS + 1;
    a.tokens_per_expert = NULL;
    assert_int_equal(mj_dispatch_layout_check_call(&s, &a, &shape, &l, &p), MOEJIT_OK);
    assert_false(l.small);
    assert_int_equal(l.blocks, 4 + 1 + 1);
    /* more than 64 ranks: rows in slices of 64 (R = 96: two a tile) */
    const moejit_dispatch_layout_spec wide = {.num_experts = 288, .num_ranks = 96, .topk = 6, .ranks_per_node = 1};
    a = (moejit_dispatch_layout_args){.ids = dev, .num_tokens = 5000, .tokens_per_node = dev, .is_token_in_rank = rows};
    assert_int_equal(mj_dispatch_layout_check_call(&wide, &a, &shape, &l, &p), MOEJIT_OK);
    assert_int_equal(p.node_blocks, 6); /* 96 nodes of one rank, 16 a block */
    assert_int_equal(p.row_tiles, 5);
    assert_int_equal(l.blocks, 6 + 5 * 2);
    /* nothing wanted, or only rows of an empty batch: nothing to launch */
    a = (moejit_dispatch_layout_args){.ids = dev, .num_tokens = 5000};
    assert_int_equal(mj_dispatch_layout_check_call(&s, &a, &shape, &l, &p), MOEJIT_OK);
    assert_int_equal(l.blocks, 0);
    a = (moejit_dispatch_layout_args){.num_tokens = 0, .is_token_in_rank = rows};
    assert_int_equal(mj_dispatch_layout_check_call(&s, &a, &shape, &l, &p), MOEJIT_OK);
    assert_int_equal(l.blocks, 0);
    /* an empty batch still writes its counts (zeros): one small block */
    a.tokens_per_rank = dev;
    assert_int_equal(mj_dispatch_layout_check_call(&s, &a, &shape, &l, &p), MOEJIT_OK);
    assert_true(l.small);
    assert_int_equal(l.blocks, 1);
}

/* Bad arguments: the right status, the field in the message, the same from the reference, and no
 * compile, no cache write, no launch. */
static void test_bad_args(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    const moejit_dispatch_layout_spec s32 = {.num_experts = 256, .num_ranks = 8, .topk = 8};
    const moejit_dispatch_layout_spec s64 = {.num_experts = 256, .num_ranks = 8, .topk = 8, .id_dtype = MOEJIT_INDEX_INT64};
    const moejit_dispatch_layout_spec s16 = {.num_experts = 256, .num_ranks = 8, .topk = 8, .id_dtype = MOEJIT_INDEX_INT16};
    int32_t *const dev = (int32_t *)0x10000; /* plausible device pointers, never dereferenced */
    const moejit_dispatch_layout_args good = {.ids = dev, .num_tokens = 100, .tokens_per_rank = dev + 64};
    struct {
        const moejit_dispatch_layout_spec *spec;
        moejit_dispatch_layout_args args;
        moejit_status status;
        const char *needle;
    } cases[16];
    int n = 0;
#define CASE(spec_, change, st, text)                                                                      \
    do {                                                                                                   \
        moejit_dispatch_layout_args a_ = good;                                                             \
        change;                                                                                            \
        cases[n].spec = spec_, cases[n].args = a_, cases[n].status = st, cases[n].needle = text, n++;      \
    } while (0)
    CASE(&s32, a_.ids = NULL, MOEJIT_ERR_INVALID_ARGUMENT, "dispatch_layout args: ids is NULL");
    CASE(&s32, a_.ids = (char *)dev + 2, MOEJIT_ERR_INVALID_ARGUMENT,
         "dispatch_layout args: ids = 0x10002 is not aligned to 4 bytes");
    CASE(&s64, a_.ids = (char *)dev + 4, MOEJIT_ERR_INVALID_ARGUMENT, "ids = 0x10004 is not aligned to 8 bytes");
    CASE(&s16, a_.ids = (char *)dev + 1, MOEJIT_ERR_INVALID_ARGUMENT, "ids = 0x10001 is not aligned to 2 bytes");
    CASE(&s32, a_.num_tokens = -1, MOEJIT_ERR_INVALID_ARGUMENT, "dispatch_layout args: num_tokens = -1 must be >= 0");
    CASE(&s32, a_.num_tokens = (int64_t)1 << 28, MOEJIT_ERR_UNSUPPORTED,
         "dispatch_layout args: num_tokens = 268435456 × topk = 8 ids exceed 2147483647");
    CASE(&s32, a_.tokens_per_rank = (int32_t *)0x20001, MOEJIT_ERR_INVALID_ARGUMENT,
         "dispatch_layout args: tokens_per_rank = 0x20001 is not aligned to 4 bytes");
    CASE(&s32, a_.tokens_per_node = (int32_t *)0x20002, MOEJIT_ERR_INVALID_ARGUMENT,
         "tokens_per_node = 0x20002 is not aligned to 4 bytes");
    CASE(&s32, a_.tokens_per_expert = (int32_t *)0x20003, MOEJIT_ERR_INVALID_ARGUMENT,
         "tokens_per_expert = 0x20003 is not aligned to 4 bytes");
    CASE(&s32, a_.reserved[3] = 1, MOEJIT_ERR_UNSUPPORTED, "dispatch_layout args: reserved[3] = 0x1 must be 0");
#undef CASE
    for (int i = 0; i < n; i++) {
        moejit_status st = moejit_dispatch_layout(ctx, cases[i].spec, &cases[i].args, NULL);
        if (st != cases[i].status || !strstr(moejit_last_error(ctx), cases[i].needle))
            fail_msg("case %d: %s: %s (wanted \"%s\")", i, moejit_status_str(st), moejit_last_error(ctx), cases[i].needle);
        st = moejit_dispatch_layout_reference(cases[i].spec, &cases[i].args); /* the same checks */
        if (st != cases[i].status || !strstr(moejit_last_error(NULL), cases[i].needle))
            fail_msg("reference case %d: %s: %s", i, moejit_status_str(st), moejit_last_error(NULL));
    }
    moejit_dispatch_layout_spec bad = s32;
    bad.num_ranks = 5;
    mjt_expect_error(moejit_dispatch_layout(ctx, &bad, &good, NULL), MOEJIT_ERR_INVALID_SPEC,
                     "num_ranks = 5 does not divide num_experts = 256");
    mjt_expect_error(moejit_dispatch_layout_reference(&bad, &good), MOEJIT_ERR_INVALID_SPEC, "num_ranks = 5");
    mjt_expect_error(moejit_dispatch_layout(ctx, &s32, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                     "dispatch_layout args: args is NULL");
    mjt_expect_error(moejit_dispatch_layout_reference(&s32, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "args is NULL");
    mjt_expect_error(moejit_dispatch_layout(NULL, &s32, &good, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                     "moejit_dispatch_layout: ctx is NULL");
    mjt_expect_error(moejit_dispatch_layout(ctx, NULL, &good, NULL), MOEJIT_ERR_INVALID_ARGUMENT,
                     "dispatch_layout spec: spec is NULL");
    /* Valid calls that launch nothing: no output wanted; only rows of an empty batch (ids NULL). */
    const moejit_dispatch_layout_args none = {.ids = dev, .num_tokens = 100};
    assert_int_equal(moejit_dispatch_layout(ctx, &s32, &none, NULL), MOEJIT_OK);
    assert_string_equal(moejit_last_error(ctx), "");
    const moejit_dispatch_layout_args empty_rows = {.num_tokens = 0, .is_token_in_rank = (uint8_t *)0x30001};
    assert_int_equal(moejit_dispatch_layout(ctx, &s32, &empty_rows, NULL), MOEJIT_OK);
    /* …and the largest batch that passes (T·K = 2^31 - 1 ids) is accepted by the checks */
    const moejit_dispatch_layout_spec k1 = {.num_experts = 256, .num_ranks = 8, .topk = 1};
    const moejit_dispatch_layout_args most = {.ids = dev, .num_tokens = INT32_MAX};
    assert_int_equal(moejit_dispatch_layout(ctx, &k1, &most, NULL), MOEJIT_OK);
    mjt_expect_nothing_ran(ctx, dir);
}

/* ---- the reference against a naive computation ----------------------------------------------- */

/* The outputs in `want`, computed the slow way around: a rank at a time over every token, a node
 * from its ranks' bytes, an expert by scanning every id. */
static void naive_layout(const moejit_dispatch_layout_spec *s, const void *ids, int64_t T, unsigned want, dlt_bufs *b)
{
    const int E = s->num_experts, R = s->num_ranks, K = s->topk, N = dlt_nodes(s), per_rank = E / R;
    const int rpn = R / N;
    uint8_t *rows = calloc((size_t)(T * R + 1), 1);
    assert_non_null(rows);
    for (int r = 0; r < R; r++) {
        int32_t count = 0;
        for (int64_t t = 0; t < T; t++) {
            int hit = 0;
            for (int k = 0; k < K; k++) {
                const int64_t v = dlt_get(ids, s->id_dtype, t * K + k);
                hit |= v >= 0 && v < E && v / per_rank == r;
            }
            rows[t * R + r] = (uint8_t)hit;
            count += hit;
        }
        if (want & DLT_RANK) memcpy((char *)b->buf[0] + 4 * r, &count, 4);
    }
    for (int nd = 0; want & DLT_NODE && nd < N; nd++) {
        int32_t count = 0;
        for (int64_t t = 0; t < T; t++) {
            int hit = 0;
            for (int r = nd * rpn; r < (nd + 1) * rpn; r++) hit |= rows[t * R + r];
            count += hit;
        }
        memcpy((char *)b->buf[1] + 4 * nd, &count, 4);
    }
    for (int e = 0; want & DLT_EXPERT && e < E; e++) {
        int32_t count = 0;
        for (int64_t i = 0; i < T * K; i++) count += dlt_get(ids, s->id_dtype, i) == e;
        memcpy((char *)b->buf[2] + 4 * e, &count, 4);
    }
    if (want & DLT_ROWS) memcpy((char *)b->buf[3] + b->rows_at, rows, (size_t)(T * R));
    free(rows);
}

static void reference_vs_naive(mjt_rng *rng, const moejit_dispatch_layout_spec *s, int64_t T, dlt_kind kind,
                               unsigned want)
{
    void *ids = dlt_make_ids(rng, kind, s->id_dtype, s->num_experts, T, s->topk);
    dlt_bufs got = dlt_bufs_new(s, T, (size_t)(mjt_next(rng) % 3), 0), want_b = dlt_bufs_new(s, T, got.rows_at, 0);
    dlt_bufs_poison(&got), dlt_bufs_poison(&want_b);
    const moejit_dispatch_layout_args a = dlt_args(&got, T ? ids : NULL, T, want);
    if (moejit_dispatch_layout_reference(s, &a) != MOEJIT_OK) fail_msg("reference: %s", moejit_last_error(NULL));
    naive_layout(s, ids, T, want, &want_b);
    char what[160];
    snprintf(what, sizeof what, "E=%d R=%d K=%d rpn=%d ids=%d T=%lld kind=%d outputs=0x%x", s->num_experts,
             s->num_ranks, s->topk, s->ranks_per_node, (int)s->id_dtype, (long long)T, (int)kind, want);
    dlt_compare(&got, &want_b, what);
    dlt_bufs_free(&got), dlt_bufs_free(&want_b), free(ids);
}

static void test_reference_vs_naive(void **state)
{
    (void)state;
    static const int shapes[][4] = {{8, 1, 1, 0},   {8, 2, 3, 0},    {8, 8, 9, 2},    {256, 8, 8, 0},
                                    {256, 64, 8, 16}, {384, 16, 8, 4}, {288, 96, 6, 1}, {64, 64, 128, 1},
                                    {384, 384, 9, 0}, {48, 12, 2, 3}};
    static const int64_t ts[] = {0, 1, 5, 129, 700};
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int d = 0; d < 3; d++)
            for (int kind = 0; kind < DLT_KINDS; kind++)
                for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
                    const moejit_dispatch_layout_spec s = {.num_experts = shapes[i][0], .num_ranks = shapes[i][1],
                                                           .topk = shapes[i][2], .id_dtype = (moejit_index_dtype)d,
                                                           .ranks_per_node = shapes[i][3]};
                    reference_vs_naive(&rng, &s, ts[t], (dlt_kind)kind, DLT_ALL);
                }
}

/* Each output alone (the others NULL and untouched), and every subset, equal to all at once. */
static void test_outputs_alone(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    const moejit_dispatch_layout_spec s = {.num_experts = 384, .num_ranks = 16, .topk = 8,
                                           .id_dtype = MOEJIT_INDEX_INT64, .ranks_per_node = 4};
    for (unsigned want = 0; want <= DLT_ALL; want++) reference_vs_naive(&rng, &s, 300, DLT_PADDED, want);
}

/* Worked by hand: E = 8 on R = 4 ranks (2 experts each), nodes of 2 ranks, K = 3, int64 ids. */
static void test_int64_ids_do_not_wrap(void **state)
{
    (void)state;
    const int64_t big = (int64_t)1 << 32;
    const int64_t ids[4 * 3] = {
        3, big + 3, -1,             /* expert 3 (rank 1, node 0); 2^32 + 3 is not expert 3 */
        7, 7, 2 * big + 7,          /* expert 7 twice (rank 3, node 1) */
        -big + 1, INT64_MIN + 2, 8, /* nothing: -2^32 + 1 and INT64_MIN + 2 are not experts 1 and 2, 8 is E */
        0, 5, INT64_MAX,            /* expert 0 (rank 0, node 0), expert 5 (rank 2, node 1) */
    };
    const moejit_dispatch_layout_spec s = {.num_experts = 8, .num_ranks = 4, .topk = 3,
                                           .id_dtype = MOEJIT_INDEX_INT64, .ranks_per_node = 2};
    int32_t ranks[4], nodes[2], experts[8];
    uint8_t rows[4 * 4];
    memset(ranks, 0xab, sizeof ranks), memset(nodes, 0xab, sizeof nodes), memset(experts, 0xab, sizeof experts);
    memset(rows, 0xab, sizeof rows);
    const moejit_dispatch_layout_args a = {.ids = ids, .num_tokens = 4, .tokens_per_rank = ranks,
                                           .tokens_per_node = nodes, .tokens_per_expert = experts,
                                           .is_token_in_rank = rows};
    assert_int_equal(moejit_dispatch_layout_reference(&s, &a), MOEJIT_OK);
    static const int32_t want_ranks[4] = {1, 1, 1, 1}, want_nodes[2] = {2, 2}, want_experts[8] = {1, 0, 0, 1, 0, 1, 0, 2};
    static const uint8_t want_rows[16] = {0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0};
    assert_memory_equal(ranks, want_ranks, sizeof ranks);
    assert_memory_equal(nodes, want_nodes, sizeof nodes);
    assert_memory_equal(experts, want_experts, sizeof experts);
    assert_memory_equal(rows, want_rows, sizeof rows);
    /* int32 and int16: the same batch where it fits (the huge values become -1) */
    for (int d = 0; d < 2; d++) {
        int32_t i32[12];
        int16_t i16[12];
        for (int i = 0; i < 12; i++) {
            const int64_t v = ids[i] >= 0 && ids[i] < 100 ? ids[i] : -1;
            i32[i] = (int32_t)v, i16[i] = (int16_t)v;
        }
        moejit_dispatch_layout_spec s2 = s;
        s2.id_dtype = d ? MOEJIT_INDEX_INT16 : MOEJIT_INDEX_INT32;
        moejit_dispatch_layout_args a2 = a;
        a2.ids = d ? (const void *)i16 : (const void *)i32;
        memset(ranks, 0xab, sizeof ranks), memset(experts, 0xab, sizeof experts);
        assert_int_equal(moejit_dispatch_layout_reference(&s2, &a2), MOEJIT_OK);
        assert_memory_equal(ranks, want_ranks, sizeof ranks);
        assert_memory_equal(experts, want_experts, sizeof experts);
    }
}

/* T = 0: every count written (zeros), no row (ids may be NULL). */
static void test_empty_batch(void **state)
{
    (void)state;
    const moejit_dispatch_layout_spec s = {.num_experts = 256, .num_ranks = 64, .topk = 8};
    int32_t ranks[64 + 1], nodes[8 + 1], experts[256 + 1];
    uint8_t rows[4];
    memset(ranks, 0xab, sizeof ranks), memset(nodes, 0xab, sizeof nodes), memset(experts, 0xab, sizeof experts);
    memset(rows, 0xab, sizeof rows);
    const moejit_dispatch_layout_args a = {.num_tokens = 0, .tokens_per_rank = ranks, .tokens_per_node = nodes,
                                           .tokens_per_expert = experts, .is_token_in_rank = rows};
    assert_int_equal(moejit_dispatch_layout_reference(&s, &a), MOEJIT_OK);
    for (int r = 0; r < 64; r++) assert_int_equal(ranks[r], 0);
    for (int n = 0; n < 8; n++) assert_int_equal(nodes[n], 0);
    for (int e = 0; e < 256; e++) assert_int_equal(experts[e], 0);
    assert_int_equal((uint32_t)ranks[64], 0xababababu); /* nothing past the ends */
    assert_int_equal((uint32_t)nodes[8], 0xababababu);
    assert_int_equal((uint32_t)experts[256], 0xababababu);
    for (int i = 0; i < 4; i++) assert_int_equal(rows[i], 0xab);
}

/* ---- the CLI and manifests ------------------------------------------------------------------- */

static char g_out[1 << 18];
#define CLI(...) mjt_cli(NULL, g_out, sizeof g_out, __VA_ARGS__, NULL)
#define EXPECT_OUTPUT(needle)                                                                              \
    do {                                                                                                   \
        if (!strstr(g_out, needle)) fail_msg("output lacks \"%s\":\n%s", needle, g_out);                   \
    } while (0)

static void test_cli(void **state)
{
    (void)state;
    assert_int_equal(CLI("source", "--op", "dispatch_layout", "--experts", "256", "--ranks", "8", "--topk", "8",
                         "--id-dtype", "int64"), 0);
    EXPECT_OUTPUT("// Module: moejit_dispatch_layout_e256_r8_k8_i64\n");
    EXPECT_OUTPUT("static constexpr int kNodes = 1;");
    assert_int_equal(CLI("source", "--op", "dispatch_layout", "--experts", "384", "--ranks", "64", "--topk", "8",
                         "--ranks-per-node", "16"), 0);
    EXPECT_OUTPUT("// Module: moejit_dispatch_layout_e384_r64_k8_i32_rpn16\n");
    EXPECT_OUTPUT("static constexpr int kNodes = 4;");
    /* bad input: exit 2, the flag or field and the value named */
    assert_int_equal(CLI("source", "--op", "dispatch_layout", "--experts", "256", "--ranks", "3", "--topk", "8"), 2);
    EXPECT_OUTPUT("num_ranks = 3 does not divide num_experts = 256");
    assert_int_equal(CLI("source", "--op", "dispatch_layout", "--experts", "256", "--ranks", "8", "--topk", "8",
                         "--id-dtype", "int8"), 2);
    EXPECT_OUTPUT("--id-dtype: \"int8\" is not one of int32, int64, int16");
    assert_int_equal(CLI("source", "--op", "dispatch_layout", "--experts", "256", "--ranks", "8"), 2);
    EXPECT_OUTPUT("--topk is required with --op dispatch_layout");
    assert_int_equal(CLI("source", "--op", "dispatch_layout", "--experts", "256", "--ranks", "8", "--topk", "8",
                         "--block-size", "64"), 2);
    EXPECT_OUTPUT("--block-size does not apply to --op dispatch_layout");
    assert_int_equal(CLI("source", "--experts", "256", "--topk", "8", "--ranks", "8"), 2);
    EXPECT_OUTPUT("--ranks does not apply to --op route");
    assert_int_equal(CLI("source", "--help"), 0);
    EXPECT_OUTPUT("--ranks-per-node");
    EXPECT_OUTPUT("--id-dtype");
    EXPECT_OUTPUT("dispatch_layout");

    /* lists: every combination, one file each */
    char dir[4096], path[4200];
    mjt_tmpdir(dir);
    assert_int_equal(CLI("source", "--op", "dispatch_layout", "--experts", "256,384", "--ranks", "8,16", "--topk", "8",
                         "--id-dtype", "int32,int16", "--out", dir), 0);
    assert_int_equal(mjt_count_files(dir), 8);
    snprintf(path, sizeof path, "%s/moejit_dispatch_layout_e384_r16_k8_i16.cu", dir);
    assert_int_equal(access(path, R_OK), 0);

    /* a manifest: the spec's field names; a bad entry names its field, the good ones are built */
    snprintf(path, sizeof path, "%s/m.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"kernels\": [\n"
          " {\"op\": \"dispatch_layout\", \"num_experts\": 256, \"num_ranks\": 8, \"topk\": 8, \"id_dtype\": \"int64\"},\n"
          " {\"op\": \"dispatch_layout\", \"num_experts\": 384, \"num_ranks\": 64, \"topk\": 8, \"ranks_per_node\": 16},\n"
          " {\"op\": \"dispatch_layout\", \"num_experts\": 384, \"num_ranks\": 64, \"topk\": 8, \"id_dtype\": \"float\"},\n"
          " {\"op\": \"dispatch_layout\", \"num_experts\": 384, \"num_rank\": 64, \"topk\": 8}\n"
          "]}\n", f);
    fclose(f);
    char out[4200];
    snprintf(out, sizeof out, "%s/out", dir);
    assert_int_equal(CLI("source", "--manifest", path, "--out", out), 1);
    EXPECT_OUTPUT("kernels[2] (dispatch_layout): field \"id_dtype\": expected one of \"int32\", \"int64\", \"int16\", got "
                  "a string \"float\"");
    EXPECT_OUTPUT("kernels[3] (dispatch_layout): unknown field \"num_rank\" (dispatch_layout fields: num_experts, "
                  "num_ranks, topk, id_dtype, ranks_per_node)");
    EXPECT_OUTPUT("moejit_dispatch_layout_e256_r8_k8_i64.cu");
    EXPECT_OUTPUT("moejit_dispatch_layout_e384_r64_k8_i32_rpn16.cu");
    assert_int_equal(mjt_count_files(out), 2);
    mjt_rmtree(dir);
}

/* ---- the kernels compile ------------------------------------------------------------------------ */

/* Every id dtype, both row paths (R up to 64, and slices of 64), more than 32 and more than 64
 * nodes, the widest rows (K = 128) and the largest shape (E = R = 4160: the small entry's counters
 * pass 48 KiB of shared memory), compiled for sm_90a with the real options. */
static void test_kernels_compile(void **state)
{
    (void)state;
    static const int shapes[][5] = {{256, 8, 8, 1, 0},   {384, 64, 8, 0, 0},      {288, 96, 6, 2, 0},
                                    {384, 384, 9, 1, 1}, {64, 64, 128, 2, 1},     {8, 1, 1, 0, 0},
                                    {4160, 4160, 5, 2, 1}, {384, 16, 8, 1, 4}};
    enum { N = sizeof shapes / sizeof shapes[0] };
    moejit_kernel_desc d[N];
    for (int i = 0; i < N; i++)
        d[i] = desc_of(shapes[i][0], shapes[i][1], shapes[i][2], (moejit_index_dtype)shapes[i][3], shapes[i][4]);
    mjt_expect_compiles(d, N, "sm_90a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_source),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_reference_vs_naive),
        cmocka_unit_test(test_outputs_alone),
        cmocka_unit_test(test_int64_ids_do_not_wrap),
        cmocka_unit_test(test_empty_batch),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_kernels_compile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
