/* GPU: dispatch_layout against its C reference on fresh random ids, every output poisoned first
 * (0xab) and compared in full with the bytes around it, so a missing write or a write out of
 * place shows: decode batches (the one-block entry) and prefill batches (the grid), E of 8 to 4160,
 * R of 1 to 4160 (rows in slices of 64 beyond 64 ranks), every id dtype, padding and ids past E
 * (int64 ids that alias an expert when truncated), a hot expert, repeated ids, each output alone,
 * misaligned ids and rows (the narrower loads and stores), and a CUDA-graph replay. Every test
 * skips without a device; MOEJIT_TEST_QUICK thins the sweeps and caps the batches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_layout_cases.h"
#include "jit/driver.h"
#include "support.h"

/* One batch on the GPU (the outputs in `want`; ids `ids_at` bytes and rows `rows_at` bytes past an
 * aligned base) against the reference. */
static void layout_and_check(mjt_rng *rng, const moejit_dispatch_layout_spec *s, int64_t T, dlt_kind kind, unsigned want,
                             size_t ids_at, size_t rows_at)
{
    const size_t id_bytes = (size_t)(T * s->topk) * (size_t)dlt_id_bytes(s->id_dtype);
    void *ids = dlt_make_ids(rng, kind, s->id_dtype, s->num_experts, T, s->topk);
    char *d_base = mjt_dev_alloc(id_bytes + ids_at + 16);
    if (id_bytes) mjt_h2d(d_base + ids_at, ids, id_bytes);
    dlt_bufs dev = dlt_bufs_new(s, T, rows_at, 1), ref = dlt_bufs_new(s, T, rows_at, 0);
    dlt_bufs_poison(&dev), dlt_bufs_poison(&ref);
    mjt_sync();
    const moejit_dispatch_layout_args a = dlt_args(&dev, T ? d_base + ids_at : NULL, T, want);
    const moejit_status st = moejit_dispatch_layout(mjt_gpu_ctx, s, &a, NULL);
    if (st != MOEJIT_OK)
        fail_msg("moejit_dispatch_layout: %s: %s", moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    mjt_sync();
    const moejit_dispatch_layout_args h = dlt_args(&ref, ids, T, want);
    assert_int_equal(moejit_dispatch_layout_reference(s, &h), MOEJIT_OK);
    char what[192];
    snprintf(what, sizeof what, "dispatch_layout E=%d R=%d K=%d rpn=%d ids=%d T=%lld kind=%d outputs=0x%x ids+%zu rows+%zu",
             s->num_experts, s->num_ranks, s->topk, s->ranks_per_node, (int)s->id_dtype, (long long)T, (int)kind, want,
             ids_at, rows_at);
    dlt_compare(&dev, &ref, what);
    dlt_bufs_free(&dev), dlt_bufs_free(&ref), mjt_dev_free(d_base), free(ids);
}

/* Compile the specs' kernels for this device in parallel before a sweep launches them one by one. */
static void prewarm(const moejit_dispatch_layout_spec *specs, size_t n)
{
    moejit_kernel_desc *d = calloc(n, sizeof *d);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) d[i].op = MOEJIT_OP_DISPATCH_LAYOUT, d[i].dispatch_layout = specs[i];
    const moejit_status st = moejit_prewarm(mjt_gpu_ctx, d, n, NULL, NULL);
    if (st != MOEJIT_OK) fail_msg("prewarm: %s: %s", moejit_status_str(st), moejit_last_error(mjt_gpu_ctx));
    free(d);
}

/* The sweep's shapes: E in {8, 256, 384, 288} × R in {1, 2, 8, 16, 64} where R divides E, K = 8
 * (E = 8: K = 3), the default nodes. Returns the count. */
static size_t sweep_shapes(moejit_dispatch_layout_spec *out, moejit_index_dtype d)
{
    static const int es[] = {8, 256, 384, 288};
    static const int rs[] = {1, 2, 8, 16, 64};
    size_t n = 0;
    for (int e = 0; e < 4; e++)
        for (int r = 0; r < 5; r++)
            if (rs[r] <= es[e] && es[e] % rs[r] == 0)
                out[n++] = (moejit_dispatch_layout_spec){.num_experts = es[e], .num_ranks = rs[r],
                                                         .topk = es[e] == 8 ? 3 : 8, .id_dtype = d};
    return n;
}

static void test_sweep(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    moejit_dispatch_layout_spec specs[3 * 20];
    size_t n = 0;
    for (int d = 0; d < 3; d++) n += sweep_shapes(specs + n, (moejit_index_dtype)d);
    prewarm(specs, n);
    /* decode (one block), the grid just past it, a tile and a bit, prefill */
    const int64_t ts[] = {0, 1, 5, 128, 1000, mjt_quick_cap(16384 + 3, 1000)};
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (size_t i = 0; i < n; i++) {
        if (!mjt_keep((int)i, 4)) continue;
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++)
            for (int kind = DLT_VALID; kind <= DLT_PADDED; kind++)
                layout_and_check(&rng, &specs[i], ts[t], (dlt_kind)kind, DLT_ALL, 0, 0);
    }
}

/* Each output alone (the grid then has only that output's blocks) and all together. */
static void test_outputs_alone(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    static const moejit_dispatch_layout_spec specs[] = {
        {.num_experts = 256, .num_ranks = 8, .topk = 8, .id_dtype = MOEJIT_INDEX_INT64},
        {.num_experts = 384, .num_ranks = 64, .topk = 8, .id_dtype = MOEJIT_INDEX_INT32, .ranks_per_node = 16},
        {.num_experts = 288, .num_ranks = 16, .topk = 6, .id_dtype = MOEJIT_INDEX_INT16, .ranks_per_node = 4},
    };
    static const unsigned wants[] = {DLT_RANK, DLT_NODE, DLT_EXPERT, DLT_ROWS, DLT_RANK | DLT_ROWS, DLT_ALL};
    const int64_t ts[] = {5, 1000, mjt_quick_cap(16384 + 3, 2000)};
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++)
            for (size_t w = 0; w < sizeof wants / sizeof wants[0]; w++)
                layout_and_check(&rng, &specs[i], ts[t], DLT_PADDED, wants[w], 0, 0);
}

/* Hot experts, repeated ids, no expert at all; ids and rows off their alignment (the narrower
 * loads of ids, the 8-, 4- and 1-byte stores of rows). */
static void test_kinds_and_alignment(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    const int64_t ts[] = {5, 128, 1000, mjt_quick_cap(16384 + 3, 2000)};
    for (int d = 0; d < 3; d++) {
        const moejit_dispatch_layout_spec s = {.num_experts = 384, .num_ranks = 64, .topk = 8,
                                               .id_dtype = (moejit_index_dtype)d};
        const size_t id_size = (size_t)dlt_id_bytes(s.id_dtype);
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
            for (int kind = DLT_HOT; kind < DLT_KINDS; kind++) layout_and_check(&rng, &s, ts[t], (dlt_kind)kind, DLT_ALL, 0, 0);
            /* ids one element past 16-byte alignment; rows at +1, +2, +4, +8 */
            layout_and_check(&rng, &s, ts[t], DLT_PADDED, DLT_ALL, id_size, 1);
            layout_and_check(&rng, &s, ts[t], DLT_REPEATS, DLT_ALL, 2 * id_size, 2);
            layout_and_check(&rng, &s, ts[t], DLT_PADDED, DLT_ALL, 0, 4);
            layout_and_check(&rng, &s, ts[t], DLT_VALID, DLT_ALL, 0, 8);
        }
    }
    /* rows of 8 ranks (8-byte stores) and of 6 (no vector at all); K odd with int16 ids (2-byte loads) */
    const moejit_dispatch_layout_spec narrow[] = {
        {.num_experts = 256, .num_ranks = 8, .topk = 8, .id_dtype = MOEJIT_INDEX_INT32},
        {.num_experts = 288, .num_ranks = 6, .topk = 7, .id_dtype = MOEJIT_INDEX_INT16, .ranks_per_node = 3},
        {.num_experts = 288, .num_ranks = 12, .topk = 5, .id_dtype = MOEJIT_INDEX_INT64, .ranks_per_node = 4},
    };
    for (size_t i = 0; i < sizeof narrow / sizeof narrow[0]; i++)
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
            layout_and_check(&rng, &narrow[i], ts[t], DLT_PADDED, DLT_ALL, 0, 0);
            layout_and_check(&rng, &narrow[i], ts[t], DLT_REPEATS, DLT_ALL, (size_t)dlt_id_bytes(narrow[i].id_dtype), 3);
        }
}

/* Beyond the common shapes: more than 64 ranks (rows in slices of 64), more than 32 and more than
 * 64 nodes, K = 128, one rank an expert, one expert, and the largest shape (E = R = N = 4160: the
 * one-block entry's counters need more than 48 KiB of shared memory). */
static void test_wide_shapes(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    static const moejit_dispatch_layout_spec specs[] = {
        {.num_experts = 288, .num_ranks = 96, .topk = 6, .id_dtype = MOEJIT_INDEX_INT64},
        {.num_experts = 288, .num_ranks = 96, .topk = 6, .id_dtype = MOEJIT_INDEX_INT32, .ranks_per_node = 2},
        {.num_experts = 384, .num_ranks = 384, .topk = 9, .id_dtype = MOEJIT_INDEX_INT16, .ranks_per_node = 1},
        {.num_experts = 64, .num_ranks = 64, .topk = 128, .id_dtype = MOEJIT_INDEX_INT32, .ranks_per_node = 1},
        {.num_experts = 256, .num_ranks = 128, .topk = 8, .id_dtype = MOEJIT_INDEX_INT64, .ranks_per_node = 32},
        {.num_experts = 1, .num_ranks = 1, .topk = 1, .id_dtype = MOEJIT_INDEX_INT32},
        {.num_experts = 4160, .num_ranks = 4160, .topk = 5, .id_dtype = MOEJIT_INDEX_INT16, .ranks_per_node = 1},
        {.num_experts = 4160, .num_ranks = 8, .topk = 16, .id_dtype = MOEJIT_INDEX_INT64},
    };
    prewarm(specs, sizeof specs / sizeof specs[0]);
    const int64_t ts[] = {0, 3, 128, 129, mjt_quick_cap(5000, 700)};
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++)
            for (int kind = DLT_VALID; kind <= DLT_REPEATS; kind++)
                if (mjt_keep(kind, 2)) layout_and_check(&rng, &specs[i], ts[t], (dlt_kind)kind, DLT_ALL, 0, 0);
}

/* Captured once in a CUDA graph, replayed on new ids over poisoned outputs: no hidden state, no
 * allocation, nothing the caller zeroes. The one-block entry and the grid. */
static void test_graph_replay(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    const mj_driver *d;
    assert_int_equal(mj_driver_get(&d), MOEJIT_OK);
    mjt_rng rng;
    mjt_rng_init(&rng);
    const moejit_dispatch_layout_spec s = {.num_experts = 256, .num_ranks = 16, .topk = 8,
                                           .id_dtype = MOEJIT_INDEX_INT64};
    const int64_t ts[] = {100, 4000};
    for (int i = 0; i < 2; i++) {
        const int64_t T = ts[i];
        const size_t id_bytes = (size_t)T * 8 * 8;
        void *d_ids = mjt_dev_alloc(id_bytes);
        dlt_bufs dev = dlt_bufs_new(&s, T, 0, 1);
        const moejit_dispatch_layout_args a = dlt_args(&dev, d_ids, T, DLT_ALL);
        void *ids = dlt_make_ids(&rng, DLT_PADDED, s.id_dtype, s.num_experts, T, s.topk);
        mjt_h2d(d_ids, ids, id_bytes);
        free(ids);
        assert_int_equal(moejit_dispatch_layout(mjt_gpu_ctx, &s, &a, NULL), MOEJIT_OK); /* loads before capture */
        mjt_sync();
        CUstream st;
        CUgraph graph;
        CUgraphExec exec;
        assert_int_equal(d->stream_create(&st, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
        assert_int_equal(d->stream_begin_capture(st, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
        assert_int_equal(moejit_dispatch_layout(mjt_gpu_ctx, &s, &a, (moejit_stream)st), MOEJIT_OK);
        assert_int_equal(d->stream_end_capture(st, &graph), CUDA_SUCCESS);
        assert_int_equal(d->graph_instantiate(&exec, graph, 0), CUDA_SUCCESS);
        for (int rep = 0; rep < 3; rep++) {
            ids = dlt_make_ids(&rng, rep == 1 ? DLT_HOT : DLT_PADDED, s.id_dtype, s.num_experts, T, s.topk);
            mjt_h2d(d_ids, ids, id_bytes);
            dlt_bufs_poison(&dev);
            mjt_sync(); /* the poison and the ids go through the legacy stream, which `st` does not wait for */
            assert_int_equal(d->graph_launch(exec, st), CUDA_SUCCESS);
            assert_int_equal(d->stream_synchronize(st), CUDA_SUCCESS);
            dlt_bufs ref = dlt_bufs_new(&s, T, 0, 0);
            dlt_bufs_poison(&ref);
            const moejit_dispatch_layout_args h = dlt_args(&ref, ids, T, DLT_ALL);
            assert_int_equal(moejit_dispatch_layout_reference(&s, &h), MOEJIT_OK);
            dlt_compare(&dev, &ref, T < 128 ? "graph replay (one block)" : "graph replay (grid)");
            dlt_bufs_free(&ref), free(ids);
        }
        d->graph_exec_destroy(exec), d->graph_destroy(graph), d->stream_destroy(st);
        dlt_bufs_free(&dev), mjt_dev_free(d_ids);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_outputs_alone),
        cmocka_unit_test(test_kinds_and_alignment),
        cmocka_unit_test(test_wide_shapes),
        cmocka_unit_test(test_graph_replay),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
