/* GPU: align against its C reference on fresh random ids, with every output poisoned first and
 * compared in full (so a write past the padded total, or a missing one, is caught): decode and
 * prefill batches, the three paths (small, onepass, three launches) on both sides of each
 * threshold, block sizes from 1 to 1024, dropped ids, skewed batches, partial output sets, int64
 * and int16 ids, first_expert and expert maps, capacities, and CUDA-graph replays. Every test
 * skips without a device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit/driver.h"
#include "ops/align/align.h"
#include "support.h"

enum { SMALL = MJ_ALIGN_PATH_SMALL, ONEPASS = MJ_ALIGN_PATH_ONEPASS, TILED = MJ_ALIGN_PATH_TILED };
static const char *const path_names[] = {"small", "onepass", "tiled"};

/* The path align takes for T tokens of K ids (sizes alone); fails the test unless it is `want`. */
static void expect_path(const moejit_align_spec *spec, int64_t T, int K, int want, const char *what)
{
    mj_align_layout l;
    assert_int_equal(mj_align_layout_for("align", spec->num_experts, spec->block_size, T, K, spec->expert_capacity,
                                         MJ_ALIGN_PATH_AUTO, &l),
                     MOEJIT_OK);
    if (l.path != want) fail_msg("%s: the %s path, wanted %s", what, path_names[l.path], path_names[want]);
}

/* How the ids of a batch are drawn. */
typedef enum { IDS_UNIFORM, IDS_ONE_EXPERT, IDS_ALL_DROPPED, IDS_TOPK } ids_kind;

static int32_t *make_ids(mjt_rng *rng, ids_kind kind, int E, int64_t T, int K)
{
    const int64_t N = T * K;
    int32_t *ids = malloc(sizeof *ids * (size_t)(N ? N : 1));
    assert_non_null(ids);
    const int hot = (int)(mjt_next(rng) % (uint64_t)E);
    for (int64_t t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            int32_t *id = &ids[t * K + k];
            const uint64_t r = mjt_next(rng);
            switch (kind) {
            case IDS_ONE_EXPERT: *id = hot; break;
            case IDS_ALL_DROPPED: *id = r % 2 ? -1 - (int32_t)(r >> 40) % 1000 : E + (int32_t)(r >> 40) % 1000; break;
            case IDS_UNIFORM: /* about 1 in 10 off this rank, on either side */
                *id = r % 10 ? (int32_t)((r >> 8) % (uint64_t)E) : (r >> 8) % 2 ? -1 : E + (int32_t)((r >> 9) % 7);
                break;
            case IDS_TOPK: { /* K distinct experts, as route produces (K <= E) */
                int32_t e;
                int again;
                do {
                    e = (int32_t)(mjt_next(rng) % (uint64_t)E);
                    again = 0;
                    for (int j = 0; j < k; j++) again |= ids[t * K + j] == e;
                } while (again);
                *id = e;
                break;
            }
            }
        }
    return ids;
}

/* Align one batch on the GPU (the outputs in `want`) on `path` (MJ_ALIGN_PATH_AUTO: the library's
 * choice; else forced, as bench_ops does) and compare with the reference. */
static void align_on_path(mjt_rng *rng, ids_kind kind, int E, int B, int64_t T, int K, unsigned want, int path)
{
    const moejit_align_spec spec = {.num_experts = E, .block_size = B};
    const int64_t N = T * K;
    int64_t cap;
    mj_align_layout l;
    assert_int_equal(moejit_align_capacity(&spec, T, K, &cap), MOEJIT_OK);
    assert_int_equal(mj_align_layout_for("align", E, B, T, K, 0, path, &l), MOEJIT_OK);
    const size_t ws_bytes = l.ws_bytes;
    int32_t *ids = make_ids(rng, kind, E, T, K);
    int32_t *d_ids = mjt_dev_alloc(4 * (size_t)N);
    mjt_h2d(d_ids, ids, 4 * (size_t)N);
    mjt_align_bufs dev = mjt_align_bufs_new(E, B, cap, N, 1), ref = mjt_align_bufs_new(E, B, cap, N, 0);
    void *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
    if (ws) mjt_dev_fill(ws, MJT_POISON, ws_bytes); /* the kernels must not rely on a zeroed workspace */
    moejit_align_args args = {.ids = d_ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&dev, want, cap)};
    args.out.workspace = ws, args.out.workspace_bytes = ws_bytes;
    moejit_status st = mj_align_launch(mjt_gpu_ctx, &spec, &args, path, NULL);
    if (st != MOEJIT_OK) fail_msg("moejit_align: %s: %s", moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    mjt_sync();

    moejit_align_args host = {.ids = ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&ref, want, cap)};
    assert_int_equal(moejit_align_reference(&spec, &host), MOEJIT_OK);
    char what[128];
    snprintf(what, sizeof what, "align E=%d B=%d T=%lld K=%d ids=%d outputs=0x%x path=%s", E, B, (long long)T, K,
             (int)kind, want, path_names[l.path]);
    mjt_align_compare(&dev, &ref, what);
    mjt_align_bufs_free(&dev), mjt_align_bufs_free(&ref);
    mjt_dev_free(d_ids), mjt_dev_free(ws), free(ids);
}

static void align_and_check(mjt_rng *rng, ids_kind kind, int E, int B, int64_t T, int K, unsigned want)
{
    align_on_path(rng, kind, E, B, T, K, want, MJ_ALIGN_PATH_AUTO);
}

static void test_align_sweep(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    static const int es[] = {1, 3, 64, 128, 256, 384, 1000, 4096};
    static const int bs[] = {1, 4, 8, 16, 64, 256, 1024};
    /* one warp (decode; 128 ids is its limit, E <= 1024), onepass (264 to 4096 ids: grids of 1 to
     * 32 blocks), three launches (40000 and 72000 ids) */
    static const int64_t ts[] = {1, 16, 33, 512, 5000, 9000};
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int e = 0; e < 8; e++)
        for (int b = 0; b < 7; b++)
            for (int t = 0; t < 6 && mjt_keep(e * 7 + b, 5); t++)
                align_and_check(&rng, IDS_UNIFORM, es[e], bs[b], ts[t], 8, MJT_ALIGN_ALL);
}

/* align_and_check where the library takes `path` (MJ_ALIGN_PATH_*). */
static void check_on_path(mjt_rng *rng, ids_kind kind, int E, int B, int64_t T, int K, int path)
{
    const moejit_align_spec spec = {.num_experts = E, .block_size = B};
    char what[96];
    snprintf(what, sizeof what, "align E=%d B=%d T=%lld K=%d", E, B, (long long)T, K);
    expect_path(&spec, T, K, path, what);
    align_and_check(rng, kind, E, B, T, K, MJT_ALIGN_ALL);
}

/* The block sizes below 16 (vLLM's small-batch paths) and the largest, on each path: at B = 1
 * every row is its own block (block_expert as long as sorted_ids), at B = 1024 nearly every row
 * is padding. */
static void test_align_block_extremes(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const int bs[] = {1, 4, 8, 1024};
    for (int b = 0; b < 4; b++) {
        if (!mjt_keep(b, 3)) continue; /* B = 1 and 1024 under compute-sanitizer */
        const int B = bs[b];
        /* the small path (one warp ranks, up to 128 ids, E <= 1024): its block labels in shared
         * memory at their most (128 blocks of one row, or 128 experts of one block each) */
        check_on_path(&rng, IDS_TOPK, 256, B, 16, 8, SMALL);
        check_on_path(&rng, IDS_UNIFORM, 1024, B, 16, 8, SMALL);
        check_on_path(&rng, IDS_ONE_EXPERT, 1024, B, 16, 8, SMALL);
        check_on_path(&rng, IDS_TOPK, 1, B, 100, 1, SMALL);
        check_on_path(&rng, IDS_TOPK, 8, B, 3, 2, SMALL);
        check_on_path(&rng, IDS_TOPK, 1024, B, 1, 128, SMALL); /* 128 experts of a row each: 128 blocks at any B */
        /* onepass, whatever the padding (4096·1023 rows at B = 1024 are spread over its grid) */
        check_on_path(&rng, IDS_TOPK, 64, B, 512, 8, ONEPASS);
        check_on_path(&rng, IDS_ONE_EXPERT, 64, B, 500, 8, ONEPASS);
        check_on_path(&rng, IDS_UNIFORM, 4096, B, 512, 8, ONEPASS);
        check_on_path(&rng, IDS_TOPK, 1000, B, 20, 8, ONEPASS);
        check_on_path(&rng, IDS_TOPK, 384, B, 4000, 8, ONEPASS);     /* 24 tiles of 1334 */
        check_on_path(&rng, IDS_ONE_EXPERT, 256, B, 3000, 8, ONEPASS); /* one warp labels all 24000 rows at B = 1 */
        check_on_path(&rng, IDS_UNIFORM, 1, B, 9000, 2, ONEPASS);
        /* three launches */
        check_on_path(&rng, IDS_TOPK, 384, B, 9000, 8, TILED);
        check_on_path(&rng, IDS_ONE_EXPERT, 256, B, 9000, 8, TILED);
        check_on_path(&rng, IDS_ALL_DROPPED, 256, B, 9000, 8, TILED);
        check_on_path(&rng, IDS_TOPK, 4096, B, 16384, 8, TILED);
        check_on_path(&rng, IDS_UNIFORM, 1, B, 40000, 2, TILED);
    }
}

static void test_align_edges(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    align_and_check(&rng, IDS_TOPK, 256, 64, 0, 8, MJT_ALIGN_ALL);           /* T = 0: zero counts, nothing else */
    align_and_check(&rng, IDS_TOPK, 256, 64, 1, 8, MJT_ALIGN_ALL);           /* one token */
    align_and_check(&rng, IDS_ONE_EXPERT, 256, 16, 9000, 8, MJT_ALIGN_ALL);  /* every id to one expert, three launches */
    align_and_check(&rng, IDS_ONE_EXPERT, 256, 16, 3000, 8, MJT_ALIGN_ALL);  /* …onepass */
    align_and_check(&rng, IDS_ONE_EXPERT, 128, 64, 100, 4, MJT_ALIGN_ALL);   /* …onepass, one block ranks all */
    align_and_check(&rng, IDS_ALL_DROPPED, 256, 64, 64, 8, MJT_ALIGN_ALL);   /* every id on another rank */
    align_and_check(&rng, IDS_ALL_DROPPED, 256, 64, 9000, 8, MJT_ALIGN_ALL); /* …in a large batch */
    align_and_check(&rng, IDS_UNIFORM, 1, 16, 777, 1, MJT_ALIGN_ALL);        /* E = 1 */
    align_and_check(&rng, IDS_UNIFORM, 1, 256, 9000, 2, MJT_ALIGN_ALL);      /* E = 1, onepass */
    align_and_check(&rng, IDS_UNIFORM, 1, 256, 40000, 2, MJT_ALIGN_ALL);     /* E = 1, three launches */
    align_and_check(&rng, IDS_TOPK, 256, 256, 16, 8, MJT_ALIGN_ALL);         /* B larger than every count */
    align_and_check(&rng, IDS_UNIFORM, 1024, 16, 128, 8, MJT_ALIGN_ALL);     /* one warp at its limit, 1024 ids */
    align_and_check(&rng, IDS_UNIFORM, 1024, 16, 205, 5, MJT_ALIGN_ALL);     /* one id more: onepass */
    align_and_check(&rng, IDS_TOPK, 4096, 16, 16384, 8, MJT_ALIGN_ALL);      /* E = 4096, T = 16384, K = 8 */
    align_and_check(&rng, IDS_TOPK, 4096, 256, 512, 8, MJT_ALIGN_ALL);       /* 4096·255 rows of padding, onepass */
    align_and_check(&rng, IDS_TOPK, 384, 64, 70000, 8, MJT_ALIGN_ALL);       /* 137 tiles */
}

/* A batch of n ids, every one `byte` repeated (0: expert 0; 0xff: -1, dropped), over E = 1, into
 * one large output (`which`: 2 sorted_ids, 3 block_expert, only at B = 1) of `capacity` rows (0:
 * the least; beyond INT32_MAX the library uses INT32_MAX) and the small ones. The large one is
 * checked in chunks: below `valid`, sorted_ids[i] = i for the rows, then the padding value, and
 * block_expert[i] = 0 for the rows, then -1; beyond, the poison. */
static void check_int32_limit(int B, int64_t n, unsigned char byte, int which, int64_t capacity, int64_t valid,
                              int32_t *d_ids, int32_t *d_out)
{
    const moejit_align_spec spec = {.num_experts = 1, .block_size = B};
    int64_t cap;
    size_t ws_bytes;
    assert_int_equal(moejit_align_capacity(&spec, n, 1, &cap), MOEJIT_OK);
    assert_int_equal(moejit_align_workspace_bytes(&spec, n, 1, &ws_bytes), MOEJIT_OK);
    const int64_t used = capacity ? (capacity < INT32_MAX ? capacity : INT32_MAX) : cap;
    const int64_t len = which == 2 ? used : used / B;
    mjt_dev_fill(d_ids, byte, 4 * (size_t)n);
    mjt_dev_fill(d_out, MJT_POISON, 4 * (size_t)len);
    int32_t small[4], *d_small = mjt_dev_alloc(sizeof small); /* counts [1], offsets [2], total_padded */
    void *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
    moejit_align_args a = {.ids = d_ids, .num_tokens = n, .topk = 1,
                           .out = {.counts = d_small, .offsets = d_small + 1, .total_padded = d_small + 3,
                                   .sorted_capacity = capacity, .workspace = ws, .workspace_bytes = ws_bytes}};
    if (which == 2) a.out.sorted_ids = d_out;
    else a.out.block_expert = d_out;
    const moejit_status st = moejit_align(mjt_gpu_ctx, &spec, &a, NULL);
    if (st != MOEJIT_OK)
        fail_msg("B=%d n=%lld: %s: %s", B, (long long)n, moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    mjt_sync();
    mjt_d2h(small, d_small, sizeof small);
    const int64_t rows = byte ? 0 : n, total = (rows + B - 1) / B * B;
    assert_int_equal(small[0], rows);
    assert_int_equal(small[1], 0);
    assert_int_equal(small[2], total);
    assert_int_equal(small[3], total);
    const size_t chunk = (size_t)1 << 26;
    int32_t *got = malloc(4 * chunk);
    assert_non_null(got);
    for (int64_t at = 0; at < len; at += (int64_t)chunk) {
        const size_t m = (size_t)(len - at) < chunk ? (size_t)(len - at) : chunk;
        mjt_d2h(got, d_out + at, 4 * m);
        for (size_t j = 0; j < m; j++) {
            const int64_t i = at + (int64_t)j;
            const int32_t w = i >= valid ? 0x5a5a5a5a
                              : which == 2 ? (int32_t)(i < rows ? i : rows)
                                           : (i < rows ? 0 : -1);
            if (got[j] != w) {
                const int32_t g = got[j];
                free(got);
                fail_msg("B=%d n=%lld: %s[%lld] = %d, wanted %d", B, (long long)n,
                         which == 2 ? "sorted_ids" : "block_expert", (long long)i, g, w);
            }
        }
    }
    free(got);
    mjt_dev_free(d_small), mjt_dev_free(ws);
}

/* Positions up to INT32_MAX (2^31 - 1 ids, or a caller's capacity that large: 16 GiB of device
 * memory): the strided loops that count the last tile, label blocks (B = 1: one a row), write -1
 * past the total and pad must not wrap on their last step. Skipped in quick mode and where the
 * device lacks the memory. */
static void test_align_int32_limit(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx || mjt_quick()) skip();
    const mj_driver *d;
    assert_int_equal(mj_driver_get(&d), MOEJIT_OK);
    const int64_t n = INT32_MAX;
    CUdeviceptr ids = 0, out = 0;
    if (d->mem_alloc(&ids, 4 * (size_t)n) != CUDA_SUCCESS || d->mem_alloc(&out, 4 * (size_t)n) != CUDA_SUCCESS) {
        if (ids) d->mem_free(ids);
        print_message("int32 limit: 16 GiB of device memory not available\n");
        skip();
    }
    int32_t *d_ids = (int32_t *)(uintptr_t)ids, *d_out = (int32_t *)(uintptr_t)out;
    /* B = 1: a block a row, all of expert 0, labelled up to INT32_MAX - 1 (three launches) */
    check_int32_limit(1, n, 0x00, 3, 0, n, d_ids, d_out);
    /* …every id dropped: every block -1, from the loop past the total */
    check_int32_limit(1, n, 0xff, 3, 0, n, d_ids, d_out);
    /* B = 8: expert 0's padding ends at 2^31 - 8, the last multiple of 8 below INT32_MAX */
    const int64_t n8 = INT32_MAX - 11;
    check_int32_limit(8, n8, 0x00, 2, 0, (n8 + 7) / 8 * 8, d_ids, d_out);
    /* a caller's capacity of 2^32 rows at B = 1: -1 up to INT32_MAX - 1 from the small path and
     * from onepass */
    check_int32_limit(1, 100, 0x00, 3, (int64_t)1 << 32, n, d_ids, d_out);
    check_int32_limit(1, 1000, 0x00, 3, (int64_t)1 << 32, n, d_ids, d_out);
    d->mem_free(ids), d->mem_free(out);
}

/* Each output alone, and a few sets (NULL = not wanted), on both paths. */
static void test_align_partial_outputs(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const unsigned sets[] = {1, 2, 4, 8, 16, 32, 4 | 8 | 16, 32 | 16, 1 | 2};
    static const int bs[] = {32, 1, 1024};
    for (int b = 0; b < 3; b++)
        for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++) {
            align_and_check(&rng, IDS_UNIFORM, 160, bs[b], 20, 6, sets[i]); /* the small path */
            align_and_check(&rng, IDS_UNIFORM, 160, bs[b], 100, 6, sets[i]); /* onepass: block 0 publishes */
            align_and_check(&rng, IDS_UNIFORM, 160, bs[b], 2000, 6, sets[i]);
            align_and_check(&rng, IDS_UNIFORM, 160, bs[b], 12000, 6, sets[i]); /* three launches */
        }
}

/* Same input twice (each path): bit-identical outputs, as the reference is. A capacity larger
 * than needed: block_expert is -1 through its end, sorted_ids untouched past the total. */
static void test_align_repeat_and_capacity(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    const int K = 8;
    static const int bs[] = {64, 1, 1024};
    /* the small path, onepass, three launches */
    static const int64_t ts[] = {10, 100, 10000};
    for (int run = 0; run < 9; run++) {
        const int B = bs[run / 3];
        const int64_t T = ts[run % 3];
        const moejit_align_spec spec = {.num_experts = 256, .block_size = B};
        int64_t cap;
        size_t ws_bytes;
        assert_int_equal(moejit_align_capacity(&spec, T, K, &cap), MOEJIT_OK);
        assert_int_equal(moejit_align_workspace_bytes(&spec, T, K, &ws_bytes), MOEJIT_OK);
        cap += 5 * B + 17; /* a caller's rounder size */
        int32_t *ids = make_ids(&rng, IDS_UNIFORM, 256, T, K);
        int32_t *d_ids = mjt_dev_alloc(4 * (size_t)(T * K));
        mjt_h2d(d_ids, ids, 4 * (size_t)(T * K));
        mjt_align_bufs first = mjt_align_bufs_new(256, B, cap, T * K, 1),
                       second = mjt_align_bufs_new(256, B, cap, T * K, 1),
                       ref = mjt_align_bufs_new(256, B, cap, T * K, 0);
        void *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
        moejit_align_args a = {.ids = d_ids, .num_tokens = T, .topk = K};
        a.out = mjt_align_select(&first, MJT_ALIGN_ALL, cap);
        a.out.workspace = ws, a.out.workspace_bytes = ws_bytes;
        assert_int_equal(moejit_align(mjt_gpu_ctx, &spec, &a, NULL), MOEJIT_OK);
        a.out = mjt_align_select(&second, MJT_ALIGN_ALL, cap);
        a.out.workspace = ws, a.out.workspace_bytes = ws_bytes;
        assert_int_equal(moejit_align(mjt_gpu_ctx, &spec, &a, NULL), MOEJIT_OK);
        mjt_sync();
        moejit_align_args h = {.ids = ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&ref, MJT_ALIGN_ALL, cap)};
        assert_int_equal(moejit_align_reference(&spec, &h), MOEJIT_OK);
        char what[64];
        snprintf(what, sizeof what, "B=%d T=%lld first run", B, (long long)T);
        mjt_align_compare(&first, &ref, what);
        snprintf(what, sizeof what, "B=%d T=%lld second run", B, (long long)T);
        mjt_align_compare(&second, &ref, what);
        mjt_align_bufs_free(&first), mjt_align_bufs_free(&second), mjt_align_bufs_free(&ref);
        mjt_dev_free(d_ids), mjt_dev_free(ws), free(ids);
    }
}

/* onepass (a grid of 24 blocks) and the three-launch path captured in a CUDA graph and replayed
 * on new ids: no hidden allocation, no host synchronisation, the workspace reused. */
static void graph_capture(int64_t T, int path)
{
    const mj_driver *d;
    assert_int_equal(mj_driver_get(&d), MOEJIT_OK);
    mjt_rng rng;
    mjt_rng_init(&rng);
    const moejit_align_spec spec = {.num_experts = 384, .block_size = 64};
    const int K = 8;
    int64_t cap;
    size_t ws_bytes;
    assert_int_equal(moejit_align_capacity(&spec, T, K, &cap), MOEJIT_OK);
    assert_int_equal(moejit_align_workspace_bytes(&spec, T, K, &ws_bytes), MOEJIT_OK);
    expect_path(&spec, T, K, path, "graph capture");
    int32_t *d_ids = mjt_dev_alloc(4 * (size_t)(T * K));
    void *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
    mjt_align_bufs dev = mjt_align_bufs_new(384, 64, cap, T * K, 1);
    moejit_align_args a = {.ids = d_ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&dev, MJT_ALIGN_ALL, cap)};
    a.out.workspace = ws, a.out.workspace_bytes = ws_bytes;
    int32_t *ids = make_ids(&rng, IDS_TOPK, 384, T, K);
    mjt_h2d(d_ids, ids, 4 * (size_t)(T * K));
    assert_int_equal(moejit_align(mjt_gpu_ctx, &spec, &a, NULL), MOEJIT_OK); /* loads the kernels before capture */
    mjt_sync();
    free(ids);

    CUstream s;
    CUgraph graph;
    CUgraphExec exec;
    assert_int_equal(d->stream_create(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
    assert_int_equal(d->stream_begin_capture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
    assert_int_equal(moejit_align(mjt_gpu_ctx, &spec, &a, (moejit_stream)s), MOEJIT_OK);
    assert_int_equal(d->stream_end_capture(s, &graph), CUDA_SUCCESS);
    assert_int_equal(d->graph_instantiate(&exec, graph, 0), CUDA_SUCCESS);
    for (int rep = 0; rep < 2; rep++) {
        ids = make_ids(&rng, IDS_TOPK, 384, T, K);
        mjt_h2d(d_ids, ids, 4 * (size_t)(T * K));
        mjt_align_bufs_poison(&dev);
        mjt_sync(); /* the poison and the ids go through the legacy stream, which `s` (non-blocking) does not wait for */
        assert_int_equal(d->graph_launch(exec, s), CUDA_SUCCESS);
        assert_int_equal(d->stream_synchronize(s), CUDA_SUCCESS);
        mjt_align_bufs ref = mjt_align_bufs_new(384, 64, cap, T * K, 0);
        moejit_align_args h = {.ids = ids, .num_tokens = T, .topk = K, .out = mjt_align_select(&ref, MJT_ALIGN_ALL, cap)};
        assert_int_equal(moejit_align_reference(&spec, &h), MOEJIT_OK);
        mjt_align_compare(&dev, &ref, "graph replay");
        mjt_align_bufs_free(&ref), free(ids);
    }
    d->graph_exec_destroy(exec), d->graph_destroy(graph), d->stream_destroy(s);
    mjt_align_bufs_free(&dev), mjt_dev_free(d_ids), mjt_dev_free(ws);
}

static void test_align_graph_capture(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    graph_capture(3000, ONEPASS);
    graph_capture(9000, TILED);
}

/* One batch of ids of spec->id_dtype, through first_expert or (spec->global_experts) a fresh
 * expert map, with spec->expert_capacity, where the library takes `path`, against the reference. */
static void map_and_check(mjt_rng *rng, const moejit_align_spec *spec, int32_t first_expert, int64_t T, int K,
                          int path)
{
    const int E = spec->num_experts, B = spec->block_size, Eg = spec->global_experts;
    const int64_t N = T * K;
    int64_t cap;
    size_t ws_bytes;
    assert_int_equal(moejit_align_capacity(spec, T, K, &cap), MOEJIT_OK);
    assert_int_equal(moejit_align_workspace_bytes(spec, T, K, &ws_bytes), MOEJIT_OK);
    char what[160];
    snprintf(what, sizeof what, "align E=%d B=%d T=%lld K=%d ids=%s Eg=%d first_expert=%d C=%d", E, B, (long long)T, K,
             spec->id_dtype == MOEJIT_INDEX_INT64 ? "int64" : spec->id_dtype == MOEJIT_INDEX_INT16 ? "int16" : "int32",
             Eg, first_expert, spec->expert_capacity);
    expect_path(spec, T, K, path, what);
    int32_t *map = Eg ? mjt_align_draw_map(rng, E, Eg) : NULL;
    void *ids = mjt_align_draw_ids(rng, spec, first_expert, N);
    const size_t id_bytes = (size_t)mjt_index_bytes(spec->id_dtype) * (size_t)N;
    void *d_ids = mjt_dev_alloc(id_bytes);
    mjt_h2d(d_ids, ids, id_bytes);
    int32_t *d_map = NULL;
    if (map) {
        d_map = mjt_dev_alloc(4 * (size_t)Eg);
        mjt_h2d(d_map, map, 4 * (size_t)Eg);
    }
    mjt_align_bufs dev = mjt_align_bufs_new(E, B, cap, N, 1), ref = mjt_align_bufs_new(E, B, cap, N, 0);
    void *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
    if (ws) mjt_dev_fill(ws, MJT_POISON, ws_bytes);
    moejit_align_args args = {.ids = d_ids, .num_tokens = T, .topk = K, .first_expert = first_expert,
                              .expert_map = d_map, .out = mjt_align_select(&dev, MJT_ALIGN_ALL, cap)};
    args.out.workspace = ws, args.out.workspace_bytes = ws_bytes;
    const moejit_status st = moejit_align(mjt_gpu_ctx, spec, &args, NULL);
    if (st != MOEJIT_OK) fail_msg("%s: %s: %s", what, moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    mjt_sync();
    moejit_align_args host = {.ids = ids, .num_tokens = T, .topk = K, .first_expert = first_expert, .expert_map = map,
                              .out = mjt_align_select(&ref, MJT_ALIGN_ALL, cap)};
    assert_int_equal(moejit_align_reference(spec, &host), MOEJIT_OK);
    mjt_align_compare(&dev, &ref, what);
    mjt_align_bufs_free(&dev), mjt_align_bufs_free(&ref);
    mjt_dev_free(d_ids), mjt_dev_free(d_map), mjt_dev_free(ws), free(ids), free(map);
}

/* Every path (one warp, onepass, three launches over tiles) × every id type × {no map,
 * first_expert != 0, an expert map}: dropped ids of every kind (-1, just outside the range, the
 * type's extremes, int64 ids that truncation would bring into range, map entries -1 or out of
 * range). One shape per type and map serves the three paths, so few kernels are compiled. */
static void test_align_id_dtypes_and_maps(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static const moejit_index_dtype types[] = {MOEJIT_INDEX_INT32, MOEJIT_INDEX_INT64, MOEJIT_INDEX_INT16};
    static const struct {
        int E, B;
        int64_t T;
        int K, path;
    } paths[] = {
        {384, 64, 16, 8, SMALL},    /* 128 ids: the small path (one warp ranks) */
        {384, 64, 400, 8, ONEPASS}, /* 3200 ids: onepass, 24 blocks of 134 */
        {384, 64, 4000, 8, ONEPASS}, /* 32000 ids: 24 blocks of 1334 */
        {384, 64, 9000, 8, TILED},  /* 72000 ids: three launches over 18 tiles */
        {4096, 16, 40, 8, ONEPASS}, /* E past the small path's 1024: onepass */
        {4096, 16, 9000, 8, TILED}, /* …and three launches */
    };
    int i = 0;
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++)
        for (int t = 0; t < 3; t++)
            for (int mode = 0; mode < 3; mode++, i++) {
                if (!mjt_keep(i, 4)) continue;
                const int E = paths[p].E;
                /* in quick mode fewer ids, still past onepass on the tiled path */
                const int64_t T = paths[p].path == TILED
                                      ? mjt_quick_cap(paths[p].T, MJ_ALIGN_ONEPASS_MAX_IDS / paths[p].K + 1)
                                      : paths[p].T;
                moejit_align_spec spec = {.num_experts = E, .block_size = paths[p].B, .id_dtype = types[t]};
                int32_t first = 0;
                if (mode == 1) /* the top of int32, negative ids (int64), inside int16's range */
                    first = types[t] == MOEJIT_INDEX_INT32 ? INT32_MAX - E + 1
                            : types[t] == MOEJIT_INDEX_INT64 ? INT32_MIN + 7
                                                             : -1000;
                if (mode == 2) spec.global_experts = types[t] == MOEJIT_INDEX_INT16 ? 3 * E : 2 * E + 1000;
                map_and_check(&rng, &spec, first, T, paths[p].K, paths[p].path);
            }
}

/* Edges of the mapping: a map of one entry, a map onto one local expert, and a batch of int64 ids
 * whose every low half is a local expert but none of which is one. */
static void test_align_map_edges(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    moejit_align_spec one = {.num_experts = 64, .block_size = 16, .global_experts = 1};
    map_and_check(&rng, &one, 0, 100, 4, ONEPASS);
    map_and_check(&rng, &one, 0, 3000, 4, ONEPASS);
    map_and_check(&rng, &one, 0, MJ_ALIGN_ONEPASS_MAX_IDS / 4 + 1, 4, TILED);

    const int E = 64, Eg = 4096, T = 600, K = 8; /* every global expert onto local expert 5 */
    const moejit_align_spec spec = {.num_experts = E, .block_size = 32, .id_dtype = MOEJIT_INDEX_INT64,
                                    .global_experts = Eg};
    int32_t *map = malloc(4 * (size_t)Eg);
    int64_t *ids = malloc(8 * (size_t)(T * K));
    for (int g = 0; g < Eg; g++) map[g] = 5;
    for (int64_t n = 0; n < T * K; n++) ids[n] = (int64_t)(mjt_next(&rng) % Eg) + ((int64_t)1 << 32) * (n % 2 ? 1 : -1);
    ids[7] = 3; /* one kept */
    int64_t cap;
    size_t ws_bytes;
    assert_int_equal(moejit_align_capacity(&spec, T, K, &cap), MOEJIT_OK);
    assert_int_equal(moejit_align_workspace_bytes(&spec, T, K, &ws_bytes), MOEJIT_OK);
    int64_t *d_ids = mjt_dev_alloc(8 * (size_t)(T * K));
    int32_t *d_map = mjt_dev_alloc(4 * (size_t)Eg);
    mjt_h2d(d_ids, ids, 8 * (size_t)(T * K));
    mjt_h2d(d_map, map, 4 * (size_t)Eg);
    void *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
    mjt_align_bufs dev = mjt_align_bufs_new(E, 32, cap, T * K, 1), ref = mjt_align_bufs_new(E, 32, cap, T * K, 0);
    moejit_align_args a = {.ids = d_ids, .num_tokens = T, .topk = K, .expert_map = d_map,
                           .out = mjt_align_select(&dev, MJT_ALIGN_ALL, cap)};
    a.out.workspace = ws, a.out.workspace_bytes = ws_bytes;
    assert_int_equal(moejit_align(mjt_gpu_ctx, &spec, &a, NULL), MOEJIT_OK);
    mjt_sync();
    moejit_align_args h = {.ids = ids, .num_tokens = T, .topk = K, .expert_map = map,
                           .out = mjt_align_select(&ref, MJT_ALIGN_ALL, cap)};
    assert_int_equal(moejit_align_reference(&spec, &h), MOEJIT_OK);
    assert_int_equal(ref.buf[0][5], 1); /* the reference itself: only ids[7] counted */
    assert_int_equal(ref.buf[4][0], 32);
    mjt_align_compare(&dev, &ref, "int64 ids whose low halves are in range");
    mjt_align_bufs_free(&dev), mjt_align_bufs_free(&ref);
    mjt_dev_free(d_ids), mjt_dev_free(d_map), mjt_dev_free(ws), free(ids), free(map);
}

/* onepass at its edges: both sides of the small path's 128 ids and of MJ_ALIGN_ONEPASS_MAX_IDS,
 * grids that grow by one block (n = 2048·G and 2048·G + 1), blocks left without a tile (n
 * below the grid's warps), every id on one expert (each block's shared atomics all on one
 * counter), every id dropped; with capacities, expert maps, first_expert and the three id types;
 * and onepass forced where the library takes another path (as bench_ops does). */
static void test_align_onepass_edges(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    const int64_t MAX = MJ_ALIGN_ONEPASS_MAX_IDS;
    check_on_path(&rng, IDS_UNIFORM, 256, 64, 128, 1, SMALL);
    check_on_path(&rng, IDS_UNIFORM, 256, 64, 129, 1, ONEPASS);  /* 16 blocks: tiles of 9 ids, 3, and none */
    check_on_path(&rng, IDS_TOPK, 128, 64, 128, 8, ONEPASS);     /* T = 128: 8 tiles of 128 */
    check_on_path(&rng, IDS_TOPK, 256, 64, 1024, 8, ONEPASS);    /* T = 1024: 16 tiles of 512 */
    check_on_path(&rng, IDS_UNIFORM, 128, 64, 16384, 1, ONEPASS); /* 8 tiles of exactly 2048 */
    check_on_path(&rng, IDS_UNIFORM, 128, 64, 16385, 1, ONEPASS); /* 9 of 1821, the last one short */
    check_on_path(&rng, IDS_UNIFORM, 128, 16, MAX - 1, 1, ONEPASS); /* 16 tiles, the last one short */
    check_on_path(&rng, IDS_TOPK, 256, 64, MAX / 8, 8, ONEPASS);  /* T = 4096: 16 tiles of 2048 */
    check_on_path(&rng, IDS_UNIFORM, 256, 64, MAX, 1, ONEPASS);
    check_on_path(&rng, IDS_UNIFORM, 256, 64, MAX + 1, 1, TILED);
    check_on_path(&rng, IDS_ONE_EXPERT, 128, 64, MAX, 1, ONEPASS);
    check_on_path(&rng, IDS_ALL_DROPPED, 128, 64, 20000, 1, ONEPASS);
    check_on_path(&rng, IDS_UNIFORM, 1, 4, 10000, 3, ONEPASS);
    check_on_path(&rng, IDS_UNIFORM, 4096, 1024, 2000, 1, ONEPASS); /* 4096 experts on 32 blocks' warps */
    check_on_path(&rng, IDS_TOPK, 1024, 1, 4000, 8, ONEPASS);
    /* onepass forced: decode batches, and past its limit (64 blocks of 2048) */
    align_on_path(&rng, IDS_TOPK, 256, 64, 1, 8, MJT_ALIGN_ALL, ONEPASS);
    align_on_path(&rng, IDS_UNIFORM, 128, 64, 16, 8, MJT_ALIGN_ALL, ONEPASS);
    align_on_path(&rng, IDS_TOPK, 128, 64, 16384, 8, MJT_ALIGN_ALL, ONEPASS);
    align_on_path(&rng, IDS_TOPK, 128, 64, 0, 8, MJT_ALIGN_ALL, ONEPASS);
    /* …and the tiles forced on a batch onepass would take */
    align_on_path(&rng, IDS_TOPK, 256, 64, 128, 8, MJT_ALIGN_ALL, TILED);

    /* capacities: every range round_up(C, B) rows, ids past an expert's first C dropped; never
     * the small path, whatever the batch */
    static const moejit_index_dtype types[] = {MOEJIT_INDEX_INT32, MOEJIT_INDEX_INT64, MOEJIT_INDEX_INT16};
    for (int t = 0; t < 3 && mjt_keep(t, 3); t++) { /* int32 alone in quick mode */
        moejit_align_spec cap = {.num_experts = 256, .block_size = 64, .id_dtype = types[t], .expert_capacity = 100};
        map_and_check(&rng, &cap, 0, 1, 8, ONEPASS);
        map_and_check(&rng, &cap, 0, 16, 8, ONEPASS);
        map_and_check(&rng, &cap, 0, 1024, 8, ONEPASS);
        map_and_check(&rng, &cap, 0, MAX / 8, 8, ONEPASS);
        map_and_check(&rng, &cap, 0, MAX / 8 + 1, 8, TILED);
        cap = (moejit_align_spec){.num_experts = 60, .block_size = 16, .id_dtype = types[t], .expert_capacity = 37};
        map_and_check(&rng, &cap, 0, 3000, 4, ONEPASS);
        cap.expert_capacity = 1; /* nearly every id dropped */
        map_and_check(&rng, &cap, 0, 5000, 4, ONEPASS);
        /* an expert map onto 256 of 600 global experts (ids of other ranks dropped), with and
         * without a capacity */
        moejit_align_spec map = {.num_experts = 256, .block_size = 64, .id_dtype = types[t], .global_experts = 600};
        map_and_check(&rng, &map, 0, 17, 8, ONEPASS);
        map_and_check(&rng, &map, 0, 4096, 8, ONEPASS);
        map_and_check(&rng, &map, 0, MAX / 8, 8, ONEPASS);
        map_and_check(&rng, &map, 0, MAX / 8 + 1, 8, TILED);
        map.expert_capacity = 20;
        map_and_check(&rng, &map, 0, 2000, 8, ONEPASS);
        /* first_expert: a contiguous slice of the global experts, the others dropped */
        const moejit_align_spec slice = {.num_experts = 128, .block_size = 32, .id_dtype = types[t]};
        map_and_check(&rng, &slice, 384, 1000, 8, ONEPASS);
        map_and_check(&rng, &slice, 384, MAX / 8, 8, ONEPASS);
        map_and_check(&rng, &slice, -1000, MAX / 8 + 1, 8, TILED);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_align_edges),
        cmocka_unit_test(test_align_sweep),
        cmocka_unit_test(test_align_block_extremes),
        cmocka_unit_test(test_align_partial_outputs),
        cmocka_unit_test(test_align_repeat_and_capacity),
        cmocka_unit_test(test_align_graph_capture),
        cmocka_unit_test(test_align_onepass_edges),
        cmocka_unit_test(test_align_id_dtypes_and_maps),
        cmocka_unit_test(test_align_map_edges),
        cmocka_unit_test(test_align_int32_limit),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
