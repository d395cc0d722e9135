/* align without a GPU: spec and argument validation (a specific status, a message naming the field
 * and value, nothing compiled or launched), the size helpers, names, and the reference checked
 * against a batch worked out by hand and against align's invariants rather than against a second
 * implementation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/align/align.h"
#include "support.h"

static void test_bad_specs(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ALIGN, .align = {.num_experts = 64, .block_size = 64}};
    assert_int_equal(moejit_validate(&d), MOEJIT_OK);
    d.align.block_size = 48;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "block_size = 48 must be a power of two in [1, 1024]");
    /* every power of two from 1 to 1024 (vLLM's small-batch paths use 4 and 8), nothing else */
    static const int bad[] = {0, -1, -16, 3, 6, 12, 1000, 1023, 1025, 2048, 1 << 30};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "align spec: block_size = %d must be", bad[i]);
        d.align.block_size = bad[i];
        mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, needle);
    }
    for (int b = 1; b <= 1024; b *= 2) {
        d.align.block_size = b;
        assert_int_equal(moejit_validate(&d), MOEJIT_OK);
    }
    d.align = (moejit_align_spec){.num_experts = 0, .block_size = 16};
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "num_experts = 0 must be >= 1");
    d.align.num_experts = -3;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "num_experts = -3");
    d.align.num_experts = 4097;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED, "num_experts = 4097 exceeds the maximum 4096");
}

static void test_names_and_sizes(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ALIGN, .align = {.num_experts = 384, .block_size = 64}};
    char name[96];
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_align_e384_b64");
    char *src;
    assert_int_equal(moejit_source(NULL, &d, &src, NULL), MOEJIT_OK);
    assert_non_null(strstr(src, "static constexpr int kExperts = 384;"));
    assert_non_null(strstr(src, "static constexpr int kBlockSize = 64;"));
    static const char *const entries[] = {"moejit_align_e384_b64_onepass(", "moejit_align_e384_b64_count(",
                                          "moejit_align_e384_b64_scan(", "moejit_align_e384_b64_scatter(",
                                          "moejit_align_e384_b64_small("};
    for (int i = 0; i < 5; i++) assert_non_null(strstr(src, entries[i]));
    assert_null(strstr(src, "_single("));
    assert_null(strstr(src, "\n#include"));
    moejit_free(src);
    d.align.block_size = 1;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_align_e384_b1");
    d.align.block_size = 1024;
    assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
    assert_string_equal(name, "moejit_align_e384_b1024");
    assert_int_equal(moejit_source(NULL, &d, &src, NULL), MOEJIT_OK);
    assert_non_null(strstr(src, "static constexpr int kBlockSize = 1024;"));
    moejit_free(src);

    /* vLLM's buffer size: numel + E·(B-1), or numel·B when there are fewer ids than experts. */
    const moejit_align_spec s = {.num_experts = 256, .block_size = 64};
    int64_t cap;
    assert_int_equal(moejit_align_capacity(&s, 16384, 8, &cap), MOEJIT_OK);
    assert_int_equal(cap, 16384 * 8 + 256 * 63);
    assert_int_equal(moejit_align_capacity(&s, 1, 8, &cap), MOEJIT_OK);
    assert_int_equal(cap, 8 * 64);
    assert_int_equal(moejit_align_capacity(&s, 0, 8, &cap), MOEJIT_OK);
    assert_int_equal(cap, 0);
    /* One launch, no workspace, up to MJ_ALIGN_ONEPASS_MAX_IDS ids (T = 4096 at K = 8); then
     * tiles of 4096 ids. */
    size_t ws;
    const int64_t max_t = MJ_ALIGN_ONEPASS_MAX_IDS / 8;
    assert_int_equal(moejit_align_workspace_bytes(&s, max_t, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 0);
    assert_int_equal(moejit_align_workspace_bytes(&s, max_t + 1, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 4 * (9 * 256 + 3 * 256 + 1));
    assert_int_equal(moejit_align_workspace_bytes(&s, MJ_ALIGN_ONEPASS_MAX_IDS + 1, 1, &ws), MOEJIT_OK);
    assert_int_equal(ws, 4 * (9 * 256 + 3 * 256 + 1));
    /* Wide padding (up to 4096·255 rows) no longer sends a small batch to the tiles: onepass
     * spreads the fill over its grid. */
    const moejit_align_spec wide = {.num_experts = 4096, .block_size = 256};
    assert_int_equal(moejit_align_workspace_bytes(&wide, 64, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 0);
    assert_int_equal(moejit_align_workspace_bytes(&wide, max_t, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 0);
    assert_int_equal(moejit_align_workspace_bytes(&wide, max_t + 1, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 4 * (9 * 4096 + 3 * 4096 + 1));
    /* B = 1: no padding, the capacity is N. */
    const moejit_align_spec one = {.num_experts = 256, .block_size = 1};
    assert_int_equal(moejit_align_capacity(&one, 16384, 8, &cap), MOEJIT_OK);
    assert_int_equal(cap, 16384 * 8);
    assert_int_equal(moejit_align_workspace_bytes(&one, max_t, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 0);
    assert_int_equal(moejit_align_workspace_bytes(&one, max_t + 1, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 4 * (9 * 256 + 3 * 256 + 1));
    /* B = 1024: up to 1023 padding rows an expert, one launch all the same. */
    const moejit_align_spec big = {.num_experts = 256, .block_size = 1024};
    assert_int_equal(moejit_align_capacity(&big, 1, 8, &cap), MOEJIT_OK);
    assert_int_equal(cap, 8 * 1024);
    assert_int_equal(moejit_align_capacity(&big, 16384, 8, &cap), MOEJIT_OK);
    assert_int_equal(cap, 16384 * 8 + 256 * 1023);
    assert_int_equal(moejit_align_workspace_bytes(&big, 17, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 0);
    assert_int_equal(moejit_align_workspace_bytes(&big, max_t + 1, 8, &ws), MOEJIT_OK);
    assert_int_equal(ws, 4 * (9 * 256 + 3 * 256 + 1));
    /* …and positions stay int32 up to the last id that fits. */
    assert_int_equal(moejit_align_capacity(&big, INT32_MAX - 256 * 1023, 1, &cap), MOEJIT_OK);
    assert_int_equal(cap, INT32_MAX);
    mjt_expect_error(moejit_align_capacity(&big, INT32_MAX - 256 * 1023 + 1, 1, &cap), MOEJIT_ERR_UNSUPPORTED,
                     "2147221760 ids over 256 experts can need 2147483648 padded rows");
    /* Positions are int32. */
    mjt_expect_error(moejit_align_capacity(&s, (int64_t)1 << 31, 1, &cap), MOEJIT_ERR_UNSUPPORTED, "(positions are int32)");
    mjt_expect_error(moejit_align_capacity(&s, 2147480000, 1, &cap), MOEJIT_ERR_UNSUPPORTED,
                 "2147480000 ids over 256 experts can need 2147496128 padded rows");
    mjt_expect_error(moejit_align_capacity(&s, -1, 8, &cap), MOEJIT_ERR_INVALID_ARGUMENT, "num_tokens = -1 must be >= 0");
    mjt_expect_error(moejit_align_capacity(&s, 4, 0, &cap), MOEJIT_ERR_INVALID_ARGUMENT, "topk = 0 must be >= 1");
    mjt_expect_error(moejit_align_capacity(&s, 4, 8, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "capacity is NULL");
}

/* The path of a batch (from sizes alone): the small entry up to 128 ids (E <= 1024, no
 * capacity), onepass up to MJ_ALIGN_ONEPASS_MAX_IDS, three launches beyond; onepass's grid gives
 * every block at most onepass_tile ids of its own and a warp about one expert to fill; forced
 * paths (measurements) where they apply. */
static mj_align_layout layout_of(int E, int B, int64_t T, int64_t K, int32_t C, int path)
{
    mj_align_layout l;
    const moejit_status st = mj_align_layout_for("align", E, B, T, K, C, path, &l);
    if (st != MOEJIT_OK) fail_msg("E=%d B=%d T=%lld K=%lld C=%d: %s", E, B, (long long)T, (long long)K, C,
                                  moejit_last_error(NULL));
    return l;
}

static void test_layout_paths(void **state)
{
    (void)state;
    enum { SMALL = MJ_ALIGN_PATH_SMALL, ONEPASS = MJ_ALIGN_PATH_ONEPASS, TILED = MJ_ALIGN_PATH_TILED };
    const int AUTO = MJ_ALIGN_PATH_AUTO, MAX = MJ_ALIGN_ONEPASS_MAX_IDS;
    static const struct {
        int E, B;
        int64_t T, K;
        int32_t C;
        int path, blocks, tiles;
    } cases[] = {
        {256, 64, 0, 8, 0, SMALL, 1, 0},        {256, 64, 16, 8, 0, SMALL, 1, 0},  /* 128 ids */
        {256, 64, 129, 1, 0, ONEPASS, 16, 0},   /* 16 blocks of 16 warps fill 256 experts */
        {128, 64, 128, 8, 0, ONEPASS, 8, 0},    /* T = 128: 8 tiles of 128 ids */
        {128, 64, 1024, 8, 0, ONEPASS, 8, 0},   /* T = 1024: 8 tiles of 1024 */
        {256, 64, 1024, 8, 0, ONEPASS, 16, 0},  /* 16 tiles of 512 */
        {256, 64, 4096, 8, 0, ONEPASS, 16, 0},  /* 16 tiles of 2048 */
        {128, 64, 2049, 8, 0, ONEPASS, 9, 0},   /* 8 tiles would hold 2049 ids: a ninth block */
        {256, 64, MAX / 8, 8, 0, ONEPASS, 16, 0}, {256, 64, MAX, 1, 0, ONEPASS, 16, 0},
        {256, 64, MAX + 1, 1, 0, TILED, 9, 9}, {256, 64, 16384, 8, 0, TILED, 32, 32},
        {1024, 16, 16, 8, 0, SMALL, 1, 0},      /* the small path's widest E */
        {1025, 16, 1, 1, 0, ONEPASS, 32, 0},    /* …past it: onepass, the fill on 32 blocks */
        {4096, 64, 0, 8, 0, ONEPASS, 32, 0},    {4096, 64, MAX, 1, 0, ONEPASS, 32, 0},
        {4096, 64, MAX + 1, 1, 0, TILED, 9, 9}, /* the scatter grid: max(P, 8 windows a block) */
        {256, 64, 1, 8, 5, ONEPASS, 16, 0},     /* a capacity: never the small path */
        {256, 1024, 100, 1, 1000, ONEPASS, 16, 0}, {8, 4, 16, 8, 3, ONEPASS, 1, 0},
        {1, 16, MAX + 1, 1, 7, TILED, 9, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const mj_align_layout l = layout_of(cases[i].E, cases[i].B, cases[i].T, cases[i].K, cases[i].C, AUTO);
        if (l.path != cases[i].path || l.blocks != cases[i].blocks || l.tiles != cases[i].tiles ||
            (l.ws_bytes > 0) != (l.path == TILED))
            fail_msg("case %zu (E=%d T=%lld K=%lld C=%d): path %d, %d blocks, %d tiles, %zu bytes of workspace", i,
                     cases[i].E, (long long)cases[i].T, (long long)cases[i].K, cases[i].C, l.path, l.blocks, l.tiles,
                     l.ws_bytes);
        size_t ws;
        const moejit_align_spec spec = {.num_experts = cases[i].E, .block_size = cases[i].B,
                                        .expert_capacity = cases[i].C};
        assert_int_equal(moejit_align_workspace_bytes(&spec, cases[i].T, (int32_t)cases[i].K, &ws), MOEJIT_OK);
        assert_int_equal(ws, l.ws_bytes);
    }
    /* onepass: every block's tile, ceil(n / blocks), fits a block's rank codes */
    for (int e = 1; e <= 4096; e = e * 3 + 1)
        for (int64_t n = 0; n <= MAX; n = n * 2 + 129) {
            const mj_align_layout l = layout_of(e, 16, n, 1, 0, ONEPASS);
            mj_align_geom g;
            mj_align_geom_for(&(mj_align_shape){.experts = e, .block_size = 16}, &g);
            assert_true(g.onepass_tile <= g.tile);
            assert_true((n + l.blocks - 1) / l.blocks <= g.onepass_tile);
            assert_true(l.blocks >= 1 && l.blocks <= 32);
        }
    /* forced paths: onepass and the tiles anywhere (beyond onepass's limit too), the small
     * entry only where it applies */
    mj_align_layout l = layout_of(128, 64, 16384, 8, 0, ONEPASS);
    assert_int_equal(l.path, ONEPASS);
    assert_int_equal(l.blocks, 64);
    assert_int_equal(l.ws_bytes, 0);
    l = layout_of(128, 64, 1, 8, 0, TILED);
    assert_int_equal(l.path, TILED);
    assert_int_equal(l.tiles, 1);
    assert_int_equal(l.ws_bytes, 4 * (128 + 3 * 128 + 1));
    l = layout_of(128, 64, 16, 8, 0, SMALL);
    assert_int_equal(l.path, SMALL);
    mj_align_layout bad;
    mjt_expect_error(mj_align_layout_for("align", 128, 64, 17, 8, 0, SMALL, &bad), MOEJIT_ERR_INVALID_ARGUMENT,
                     "the small path takes up to 128 ids");
    mjt_expect_error(mj_align_layout_for("align", 128, 64, 1, 8, 4, SMALL, &bad), MOEJIT_ERR_INVALID_ARGUMENT,
                     "expert_capacity = 4");
    mjt_expect_error(mj_align_layout_for("align", 1025, 64, 1, 8, 0, SMALL, &bad), MOEJIT_ERR_INVALID_ARGUMENT,
                     "E = 1025");
}

/* Bad arguments: the right status, the field in the message, and no compile, no cache write, no launch. */
static void test_bad_args(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    const moejit_align_spec s = {.num_experts = 64, .block_size = 16};
    int32_t *const dev = (int32_t *)0x10000; /* plausible device pointers, never dereferenced */
    const moejit_align_args good = {.ids = dev, .num_tokens = 100, .topk = 4, .out = {.sorted_ids = dev + 64}};
    int64_t cap;
    assert_int_equal(moejit_align_capacity(&s, 100, 4, &cap), MOEJIT_OK);
    struct {
        moejit_align_args args;
        moejit_status status;
        const char *needle;
    } cases[12];
    int n = 0;
#define CASE(field_change, st, text)                                                                         \
    do {                                                                                                     \
        moejit_align_args a_ = good;                                                                         \
        field_change;                                                                                        \
        cases[n].args = a_, cases[n].status = st, cases[n].needle = text, n++;                               \
    } while (0)
    CASE(a_.ids = NULL, MOEJIT_ERR_INVALID_ARGUMENT, "align args: ids is NULL");
    CASE(a_.ids = (int32_t *)0x10002, MOEJIT_ERR_INVALID_ARGUMENT, "ids = 0x10002 is not aligned to 4 bytes");
    CASE(a_.num_tokens = -2, MOEJIT_ERR_INVALID_ARGUMENT, "num_tokens = -2 must be >= 0");
    CASE(a_.topk = 0, MOEJIT_ERR_INVALID_ARGUMENT, "topk = 0 must be >= 1");
    CASE(a_.out.counts = (int32_t *)0x20001, MOEJIT_ERR_INVALID_ARGUMENT, "counts = 0x20001 is not aligned");
    CASE(a_.out.slot_of = (int32_t *)0x20003, MOEJIT_ERR_INVALID_ARGUMENT, "slot_of = 0x20003 is not aligned");
    CASE(a_.out.sorted_capacity = cap - 1, MOEJIT_ERR_INVALID_ARGUMENT, "is smaller than the");
    /* past onepass (MJ_ALIGN_ONEPASS_MAX_IDS), the three launches need a workspace */
    CASE(a_.num_tokens = 20000, MOEJIT_ERR_INVALID_ARGUMENT, "workspace_bytes = 0 is smaller than");
    CASE((a_.num_tokens = 20000, a_.out.workspace_bytes = 1 << 20), MOEJIT_ERR_INVALID_ARGUMENT,
         "align args: workspace is NULL");
    CASE((a_.num_tokens = 20000, a_.out.workspace_bytes = 1 << 20, a_.out.workspace = (void *)0x30002),
         MOEJIT_ERR_INVALID_ARGUMENT, "workspace = 0x30002 is not aligned");
    CASE(a_.num_tokens = (int64_t)1 << 30, MOEJIT_ERR_UNSUPPORTED, "(positions are int32)");
#undef CASE
    char sorted_msg[128];
    snprintf(sorted_msg, sizeof sorted_msg, "sorted_capacity = %lld is smaller than the %lld entries 400 ids can need",
             (long long)(cap - 1), (long long)cap);
    for (int i = 0; i < n; i++) {
        const moejit_status st = moejit_align(ctx, &s, &cases[i].args, NULL);
        const char *needle = i == 6 ? sorted_msg : cases[i].needle;
        if (st != cases[i].status || !strstr(moejit_last_error(ctx), needle))
            fail_msg("case %d: %s: %s (wanted \"%s\")", i, moejit_status_str(st), moejit_last_error(ctx), needle);
        /* the reference validates the same way (it needs no workspace) */
        if (i < 7 || i == 10) assert_int_equal(moejit_align_reference(&s, &cases[i].args), cases[i].status);
    }
    moejit_align_spec bad = {.num_experts = 64, .block_size = 24};
    mjt_expect_error(moejit_align(ctx, &bad, &good, NULL), MOEJIT_ERR_INVALID_SPEC, "block_size = 24");
    mjt_expect_error(moejit_align(ctx, &s, NULL, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "align args: args is NULL");
    mjt_expect_error(moejit_align(NULL, &s, &good, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "ctx is NULL");
    mjt_expect_error(moejit_align(ctx, NULL, &good, NULL), MOEJIT_ERR_INVALID_ARGUMENT, "spec is NULL");
    /* Nothing wanted: valid, and nothing runs (no GPU needed to find out). */
    moejit_align_args none = {.ids = dev, .num_tokens = 100, .topk = 4};
    assert_int_equal(moejit_align(ctx, &s, &none, NULL), MOEJIT_OK);

    mjt_expect_nothing_ran(ctx, dir);
}

/* align's meaning, checked directly on reference outputs: `local` is the local expert of each flat
 * index, worked out by the test (any value outside [0, E): dropped). */
static void check_invariants(const int32_t *local, int E, int B, int64_t T, int K, int64_t cap, const int32_t *counts,
                             const int32_t *off, const int32_t *sorted, const int32_t *block_expert,
                             int32_t total, const int32_t *slot_of)
{
    const int N = (int)(T * K);
    int32_t *hist = calloc((size_t)E, sizeof *hist);
    for (int i = 0; i < N; i++)
        if (local[i] >= 0 && local[i] < E) hist[local[i]]++;
    assert_int_equal(off[0], 0);
    for (int e = 0; e < E; e++) {
        assert_int_equal(counts[e], hist[e]);
        assert_int_equal(off[e + 1] - off[e], (hist[e] + B - 1) / B * B);
        /* the expert's rows: its ids in ascending order, then the padding value */
        for (int q = off[e]; q < off[e + 1]; q++) {
            const int r = q - off[e];
            if (r < counts[e]) {
                assert_true(sorted[q] >= 0 && sorted[q] < N);
                assert_int_equal(local[sorted[q]], e);
                assert_int_equal(slot_of[sorted[q]], q);
                if (r > 0) assert_true(sorted[q] > sorted[q - 1]);
            } else {
                assert_int_equal(sorted[q], N);
            }
        }
        for (int b = off[e] / B; b < off[e + 1] / B; b++) assert_int_equal(block_expert[b], e);
    }
    assert_int_equal(off[E], total);
    assert_true(total <= cap && total % B == 0);
    for (int64_t q = total; q < cap; q++) assert_int_equal(sorted[q], 0x5a5a5a5a); /* never written */
    for (int64_t b = total / B; b < cap / B; b++) assert_int_equal(block_expert[b], -1);
    /* every id exactly once: valid ones where sorted_ids says, dropped ones nowhere */
    for (int i = 0; i < N; i++) {
        if (local[i] >= 0 && local[i] < E) assert_int_equal(sorted[slot_of[i]], i);
        else assert_int_equal(slot_of[i], -1);
    }
    free(hist);
}

/* A batch worked out by hand at B = 1 and B = 4: ids [5, 2] over 4 experts, expert 3 empty, two
 * ids of other ranks (5 and -1). P: never written (positions past the total). */
static void test_reference_by_hand(void **state)
{
    (void)state;
    enum { E = 4, T = 5, K = 2, N = T * K, P = 0x5a5a5a5a };
    static const int32_t ids[N] = {2, 0, 1, 2, 5, 0, 2, -1, 2, 2};
    static const int32_t counts[E] = {2, 1, 5, 0};
    static const struct {
        int B;
        int64_t cap;
        int32_t offsets[E + 1], sorted[22], block_expert[10], slot_of[N];
    } want[] = {
        /* every row its own block: the ids in expert order, block_expert = each row's expert */
        {1, 10, {0, 2, 3, 8, 8}, {1, 5, 2, 0, 3, 6, 8, 9, P, P}, {0, 0, 1, 2, 2, 2, 2, 2, -1, -1},
         {3, 0, 2, 4, -1, 1, 5, -1, 6, 7}},
        /* experts padded to 4, 4, 8 and 0 rows with N = 10; capacity 10 + 4·3 */
        {4, 22, {0, 4, 8, 16, 16}, {1, 5, 10, 10, 2, 10, 10, 10, 0, 3, 6, 8, 9, 10, 10, 10, P, P, P, P, P, P},
         {0, 1, 2, 2, -1}, {8, 0, 4, 9, -1, 1, 10, -1, 11, 12}},
    };
    for (int w = 0; w < 2; w++) {
        const int B = want[w].B;
        const moejit_align_spec s = {.num_experts = E, .block_size = B};
        int64_t cap;
        assert_int_equal(moejit_align_capacity(&s, T, K, &cap), MOEJIT_OK);
        assert_int_equal(cap, want[w].cap);
        mjt_align_bufs o = mjt_align_bufs_new(E, B, cap, N, 0);
        moejit_align_args a = {.ids = ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&o, MJT_ALIGN_ALL, cap)};
        assert_int_equal(moejit_align_reference(&s, &a), MOEJIT_OK);
        assert_memory_equal(o.buf[0], counts, sizeof counts);
        assert_memory_equal(o.buf[1], want[w].offsets, sizeof want[w].offsets);
        assert_memory_equal(o.buf[2], want[w].sorted, 4 * (size_t)cap);
        assert_memory_equal(o.buf[3], want[w].block_expert, 4 * (size_t)(cap / B));
        assert_int_equal(o.buf[4][0], want[w].offsets[E]);
        assert_memory_equal(o.buf[5], want[w].slot_of, sizeof want[w].slot_of);
        mjt_align_bufs_free(&o);
    }
}

static void test_reference_invariants(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int es[] = {1, 3, 64, 257, 4096};
    static const int bs[] = {1, 4, 8, 16, 64, 256, 1024};
    static const int64_t ts[] = {0, 1, 7, 300};
    for (int e = 0; e < 5; e++)
        for (int b = 0; b < 7; b++)
            for (int t = 0; t < 4; t++) {
                const int E = es[e], B = bs[b], K = 1 + (int)(mjt_next(&rng) % 9);
                const int64_t T = ts[t], N = T * K;
                const moejit_align_spec s = {.num_experts = E, .block_size = B};
                int64_t cap;
                assert_int_equal(moejit_align_capacity(&s, T, K, &cap), MOEJIT_OK);
                int32_t *ids = malloc(4 * (size_t)N + 4);
                const int hot = (int)(mjt_next(&rng) % (uint64_t)E);
                for (int64_t i = 0; i < N; i++) {
                    const uint64_t r = mjt_next(&rng);
                    /* a hot expert, dropped ids on both sides, the rest uniform */
                    ids[i] = r % 4 == 0 ? hot : r % 11 == 0 ? -1 - (int32_t)(r % 5) : r % 13 == 0 ? E + (int32_t)(r % 3)
                                                                                               : (int32_t)((r >> 8) % (uint64_t)E);
                }
                mjt_align_bufs o = mjt_align_bufs_new(E, B, cap, N, 0);
                moejit_align_args a = {.ids = ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&o, MJT_ALIGN_ALL, cap)};
                assert_int_equal(moejit_align_reference(&s, &a), MOEJIT_OK);
                check_invariants(ids, E, B, T, K, cap, o.buf[0], o.buf[1], o.buf[2], o.buf[3], o.buf[4][0], o.buf[5]);
                mjt_align_bufs_free(&o);
                free(ids);
            }
}

/* Id dtypes and expert maps in the spec: checked like every field, named only away from the
 * defaults (so int32 kernels keep their names), and without effect on the sizes. */
static void test_id_dtype_and_map_specs(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ALIGN, .align = {.num_experts = 384, .block_size = 64}};
    d.align.id_dtype = (moejit_index_dtype)3;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC,
                     "align spec: id_dtype = 3 is not a moejit_index_dtype (0 int32, 1 int64, 2 int16)");
    d.align.id_dtype = (moejit_index_dtype)-1;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "align spec: id_dtype = -1 is not");
    d.align.id_dtype = MOEJIT_INDEX_INT32;
    d.align.global_experts = -1;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "align spec: global_experts = -1 must be >= 0");
    d.align.global_experts = MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS + 1;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_UNSUPPORTED,
                     "align spec: global_experts = 1048577 exceeds the maximum 1048576");
    d.align.global_experts = INT32_MIN;
    mjt_expect_error(moejit_validate(&d), MOEJIT_ERR_INVALID_SPEC, "global_experts = -2147483648 must be >= 0");

    static const struct {
        moejit_index_dtype t;
        int32_t eg;
        const char *name, *id_type;
    } shapes[] = {
        {MOEJIT_INDEX_INT32, 0, "moejit_align_e384_b64", "typedef int Id;"},
        {MOEJIT_INDEX_INT64, 0, "moejit_align_e384_b64_i64", "typedef long long Id;"},
        {MOEJIT_INDEX_INT16, 0, "moejit_align_e384_b64_i16", "typedef short Id;"},
        {MOEJIT_INDEX_INT32, 512, "moejit_align_e384_b64_g512", "typedef int Id;"},
        {MOEJIT_INDEX_INT16, 1, "moejit_align_e384_b64_i16_g1", "typedef short Id;"},
        {MOEJIT_INDEX_INT64, MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS, "moejit_align_e384_b64_i64_g1048576", "typedef long long Id;"},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        d.align = (moejit_align_spec){.num_experts = 384, .block_size = 64, .id_dtype = shapes[i].t,
                                      .global_experts = shapes[i].eg};
        assert_int_equal(moejit_validate(&d), MOEJIT_OK);
        char name[96], line[64], *src;
        assert_int_equal(moejit_kernel_name(&d, name, sizeof name), MOEJIT_OK);
        assert_string_equal(name, shapes[i].name);
        assert_int_equal(moejit_source(NULL, &d, &src, NULL), MOEJIT_OK);
        assert_non_null(strstr(src, shapes[i].id_type));
        snprintf(line, sizeof line, "static constexpr int kGlobalExperts = %d;", shapes[i].eg);
        assert_non_null(strstr(src, line));
        moejit_free(src);
        /* the sizes are the int32 ones */
        int64_t cap;
        size_t ws;
        assert_int_equal(moejit_align_capacity(&d.align, 16384, 8, &cap), MOEJIT_OK);
        assert_int_equal(cap, 16384 * 8 + 384 * 63);
        assert_int_equal(moejit_align_workspace_bytes(&d.align, 16384, 8, &ws), MOEJIT_OK);
        assert_int_equal(ws, 4 * (32 * 384 + 3 * 384 + 1));
    }
}

/* Bad ids or maps: the right status and the fields in the message, from the launch and the
 * reference alike, and nothing compiled or launched. */
static void test_bad_id_and_map_args(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    int32_t *const dev = (int32_t *)0x10000; /* plausible device pointers, never dereferenced */
    const moejit_align_spec plain = {.num_experts = 64, .block_size = 16},
                            i64 = {.num_experts = 64, .block_size = 16, .id_dtype = MOEJIT_INDEX_INT64},
                            i16 = {.num_experts = 64, .block_size = 16, .id_dtype = MOEJIT_INDEX_INT16},
                            mapped = {.num_experts = 64, .block_size = 16, .global_experts = 256};
    const moejit_align_outputs out = {.sorted_ids = dev + 64};
    const struct {
        const moejit_align_spec *spec;
        moejit_align_args args;
        const char *needle;
    } cases[] = {
        {&i64, {.ids = (void *)0x10004, .num_tokens = 100, .topk = 4, .out = out},
         "align args: ids = 0x10004 is not aligned to 8 bytes"},
        {&i16, {.ids = (void *)0x10001, .num_tokens = 100, .topk = 4, .out = out},
         "align args: ids = 0x10001 is not aligned to 2 bytes"},
        {&i16, {.ids = NULL, .num_tokens = 1, .topk = 1, .out = out}, "align args: ids is NULL"},
        {&mapped, {.ids = dev, .num_tokens = 100, .topk = 4, .first_expert = 3, .expert_map = dev, .out = out},
         "align args: first_expert = 3 with expert_map (spec.global_experts = 256)"},
        {&mapped, {.ids = dev, .num_tokens = 0, .topk = 4, .first_expert = -7, .expert_map = dev, .out = out},
         "align args: first_expert = -7 with expert_map"},
        {&mapped, {.ids = dev, .num_tokens = 100, .topk = 4, .out = out},
         "align args: expert_map is NULL, but spec.global_experts = 256 needs a map"},
        {&mapped, {.ids = dev, .num_tokens = 100, .topk = 4, .expert_map = (int32_t *)0x20002, .out = out},
         "align args: expert_map = 0x20002 is not aligned to 4 bytes"},
        {&plain, {.ids = dev, .num_tokens = 100, .topk = 4, .expert_map = (int32_t *)0x20000, .out = out},
         "align args: expert_map = 0x20000 is given but spec.global_experts = 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const moejit_status st = moejit_align(ctx, cases[i].spec, &cases[i].args, NULL);
        if (st != MOEJIT_ERR_INVALID_ARGUMENT || !strstr(moejit_last_error(ctx), cases[i].needle))
            fail_msg("case %zu: %s: %s (wanted \"%s\")", i, moejit_status_str(st), moejit_last_error(ctx),
                     cases[i].needle);
        mjt_expect_error(moejit_align_reference(cases[i].spec, &cases[i].args), MOEJIT_ERR_INVALID_ARGUMENT,
                         cases[i].needle);
    }
    /* No ids, no map needed; an int16 id array may be 2-byte aligned; nothing wanted runs nothing. */
    int32_t counts[64], offsets[65], total = -1;
    moejit_align_args none = {.num_tokens = 0, .topk = 8, .out = {.counts = counts, .offsets = offsets, .total_padded = &total}};
    assert_int_equal(moejit_align_reference(&mapped, &none), MOEJIT_OK);
    assert_int_equal(total, 0);
    assert_int_equal(offsets[64], 0);
    const moejit_align_args odd16 = {.ids = (void *)0x10002, .num_tokens = 100, .topk = 4};
    assert_int_equal(moejit_align(ctx, &i16, &odd16, NULL), MOEJIT_OK);
    mjt_expect_nothing_ran(ctx, dir);
}

/* The local expert of each flat index of a B = 1 reference run: with a row per block,
 * block_expert[slot_of[i]] is the expert of id i. Also checks align's invariants. */
static void run_locals(const moejit_align_spec *spec, const void *ids, int64_t T, int K, int32_t first_expert,
                       const int32_t *map, int32_t *local_out)
{
    const int E = spec->num_experts, B = spec->block_size;
    const int64_t N = T * K;
    int64_t cap;
    assert_int_equal(moejit_align_capacity(spec, T, K, &cap), MOEJIT_OK);
    mjt_align_bufs o = mjt_align_bufs_new(E, B, cap, N, 0);
    moejit_align_args a = {.ids = ids, .num_tokens = T, .topk = K, .first_expert = first_expert, .expert_map = map,
                           .out = mjt_align_select(&o, MJT_ALIGN_ALL, cap)};
    const moejit_status st = moejit_align_reference(spec, &a);
    if (st != MOEJIT_OK) fail_msg("reference: %s", moejit_last_error(NULL));
    int32_t *want = malloc(sizeof *want * (size_t)(N ? N : 1));
    for (int64_t i = 0; i < N; i++)
        want[i] = mjt_align_expected_local(spec, first_expert, map, mjt_index_get(ids, spec->id_dtype, i));
    check_invariants(want, E, B, T, K, cap, o.buf[0], o.buf[1], o.buf[2], o.buf[3], o.buf[4][0], o.buf[5]);
    if (local_out)
        for (int64_t i = 0; i < N; i++) local_out[i] = o.buf[5][i] < 0 ? -1 : o.buf[3][o.buf[5][i] / B];
    free(want);
    mjt_align_bufs_free(&o);
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define EXPECT_LOCALS(spec, ids, first, map, ...)                                                          \
    do {                                                                                                  \
        static const int32_t want_[] = {__VA_ARGS__};                                                     \
        int32_t got_[COUNT(want_)];                                                                       \
        assert_int_equal(COUNT(ids), COUNT(want_));                                                       \
        run_locals(spec, ids, (int64_t)COUNT(want_), 1, first, map, got_);                                \
        assert_memory_equal(got_, want_, sizeof want_);                                                   \
    } while (0)

/* By hand, E = 4 local experts: ids are never truncated (an int64 id past int32 is dropped, not
 * wrapped into range), first_expert shifts them without overflow, the map drops -1, entries
 * outside [0, E) and ids outside [0, Eg). */
static void test_reference_ids_by_hand(void **state)
{
    (void)state;
    const int64_t two32 = (int64_t)1 << 32;
    moejit_align_spec s64 = {.num_experts = 4, .block_size = 1, .id_dtype = MOEJIT_INDEX_INT64};
    static const int64_t wide[] = {3, ((int64_t)1 << 33) + 3, -1, (int64_t)1 << 32, INT64_MIN, 2, INT64_MAX,
                                   -((int64_t)1 << 32) + 1, 0, -((int64_t)1 << 33) + 1};
    EXPECT_LOCALS(&s64, wide, 0, NULL, 3, -1, -1, -1, -1, 2, -1, -1, 0, -1);
    const int64_t shifted[] = {103, 100 + two32, 99, 101, INT64_MAX, INT64_MIN, 104, 100 - two32, 100};
    EXPECT_LOCALS(&s64, shifted, 100, NULL, 3, -1, -1, 1, -1, -1, -1, -1, 0);
    /* first_expert at the edges of int32: id - first_expert needs 64 bits */
    const int64_t low[] = {INT32_MIN, (int64_t)INT32_MIN - 1, (int64_t)INT32_MIN + 3, INT64_MIN, INT64_MAX, 0};
    EXPECT_LOCALS(&s64, low, INT32_MIN, NULL, 0, -1, 3, -1, -1, -1);
    const int64_t high[] = {INT32_MAX, (int64_t)INT32_MAX + 3, (int64_t)INT32_MAX + 4, INT64_MAX, -1, INT32_MAX - 1};
    EXPECT_LOCALS(&s64, high, INT32_MAX, NULL, 0, 3, -1, -1, -1, -1);
    const int64_t below[] = {-5, -2, INT64_MAX, INT64_MIN, -6, -1};
    EXPECT_LOCALS(&s64, below, -5, NULL, 0, 3, -1, -1, -1, -1);

    moejit_align_spec s16 = {.num_experts = 4, .block_size = 1, .id_dtype = MOEJIT_INDEX_INT16};
    static const int16_t narrow[] = {-1, 3, INT16_MIN, INT16_MAX, 2, 4};
    EXPECT_LOCALS(&s16, narrow, 0, NULL, -1, 3, -1, -1, 2, -1);
    static const int16_t top[] = {32767, 32764, 32765, INT16_MIN, -1, 32766};
    EXPECT_LOCALS(&s16, top, 32764, NULL, 3, 0, 1, -1, -1, 2);
    static const int16_t neg[] = {-32768, -32765, -32764, 0, 32767};
    EXPECT_LOCALS(&s16, neg, -32768, NULL, 0, 3, -1, -1, -1);

    /* a map of 6 global experts: 1 and 5 elsewhere (-1, -2), 2 past the local experts (7) */
    static const int32_t map[] = {2, -1, 7, 0, 3, -2};
    moejit_align_spec m32 = {.num_experts = 4, .block_size = 1, .global_experts = 6};
    static const int32_t gids[] = {0, 1, 2, 3, 4, 5, 6, -1, 4, 0, INT32_MAX, INT32_MIN};
    EXPECT_LOCALS(&m32, gids, 0, map, 2, -1, -1, 0, 3, -1, -1, -1, 3, 2, -1, -1);
    moejit_align_spec m64 = m32;
    m64.id_dtype = MOEJIT_INDEX_INT64;
    const int64_t gwide[] = {4, 4 + two32, 3 - two32, 0, (int64_t)1 << 40, -1, 3};
    EXPECT_LOCALS(&m64, gwide, 0, map, 3, -1, -1, 2, -1, -1, 0);
    moejit_align_spec m16 = m32;
    m16.id_dtype = MOEJIT_INDEX_INT16;
    static const int16_t gnarrow[] = {3, -1, 6, INT16_MAX, INT16_MIN, 0};
    EXPECT_LOCALS(&m16, gnarrow, 0, map, 0, -1, -1, -1, -1, 2);
}

/* Random batches of every id type, without a map (first_expert from 0 to the edges of int32) and
 * with one (maps with -1 and out-of-range entries, shorter and longer than E), on align's
 * invariants against local experts the test works out from moejit.h's definition. */
static void test_reference_ids_and_maps(void **state)
{
    (void)state;
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const moejit_index_dtype types[] = {MOEJIT_INDEX_INT32, MOEJIT_INDEX_INT64, MOEJIT_INDEX_INT16};
    static const int32_t firsts[] = {0, 7, -3, 1000000, INT32_MAX - 100, INT32_MAX, INT32_MIN, 32700};
    static const int es[] = {1, 5, 64, 257, 4096};
    static const int bs[] = {1, 16, 256};
    for (int t = 0; t < 3; t++)
        for (int e = 0; e < 5; e++)
            for (int mode = 0; mode < 2 + (int)COUNT(firsts); mode++) {
                const int E = es[e], B = bs[(t + e + mode) % 3];
                const int64_t T = 1 + (int64_t)(mjt_next(&rng) % 300);
                const int K = 1 + (int)(mjt_next(&rng) % 8);
                moejit_align_spec s = {.num_experts = E, .block_size = B, .id_dtype = types[t]};
                int32_t first = 0, *map = NULL;
                if (mode < 2) { /* a map: shorter than E (some locals never used) or longer */
                    s.global_experts = mode == 0 ? 1 + E / 2 : 3 * E + 70000 * (e == 2);
                    map = mjt_align_draw_map(&rng, E, s.global_experts);
                } else {
                    first = firsts[mode - 2];
                }
                void *ids = mjt_align_draw_ids(&rng, &s, first, T * K);
                run_locals(&s, ids, T, K, first, map, NULL);
                free(ids), free(map);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_names_and_sizes),
        cmocka_unit_test(test_layout_paths),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_reference_by_hand),
        cmocka_unit_test(test_reference_invariants),
        cmocka_unit_test(test_id_dtype_and_map_specs),
        cmocka_unit_test(test_bad_id_and_map_args),
        cmocka_unit_test(test_reference_ids_by_hand),
        cmocka_unit_test(test_reference_ids_and_maps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
