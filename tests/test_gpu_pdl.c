/* GPU: programmatic dependent launch (moejit_config.pdl, MOEJIT_PDL; DESIGN §1).
 *
 * A MoE layer's moejit chain — route, align, permute, combine, then route_align on the same
 * logits — runs ROUNDS times back to back on one stream, every round's intermediates in the same
 * buffers: a kernel that touched memory before waiting for the one before it would read a
 * predecessor's unfinished output, or overwrite what a predecessor still reads (route of round
 * r+1 rewrites the weights combine of round r reads). The chain runs with PDL on and off (two
 * contexts), eagerly and in a CUDA graph (replayed twice), and eagerly on the legacy default
 * stream: every output is bit-identical across the runs and to a serial run (a synchronisation
 * after every launch, PDL off), whose every round matches the C references (route within
 * tolerance, align, permute and combine exactly on the GPU's inputs, route_align bit for bit
 * equal to route then align). Batches take each path: align's one-warp, one-block and
 * three-launch paths, route_align's fused kernel and its fallback. Skips without a device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/numeric.h"
#include "jit/driver.h"
#include "support.h"

enum { ROUNDS = 3, E = 256, K = 8, B = 64, H = 256 };

static const moejit_route_spec k_route = {.num_experts = E, .topk = K, .score = MOEJIT_SCORE_SIGMOID,
                                          .dtype = MOEJIT_DTYPE_BF16, .has_bias = 1, .renormalize = 1,
                                          .scale_output = 1, .routed_scaling_factor = 2.5f};
static const moejit_align_spec k_align = {.num_experts = E, .block_size = B};
static const moejit_permute_spec k_permute = {.hidden = H, .dtype = MOEJIT_DTYPE_BF16};
static const moejit_combine_spec k_combine = {.hidden = H, .dtype = MOEJIT_DTYPE_BF16};

static const mj_driver *drv;

/* Host copies of inputs and the device buffers of one batch size. */
typedef struct batch {
    int64_t T, cap;
    size_t ws_bytes, ra_ws_bytes;
    moejit_route_align_spec ra_spec;
    /* per round: inputs on the host and the device (the logits are drawn clear of near-ties for
     * their own bias), the layer's output on the device */
    void *logits[ROUNDS], *x[ROUNDS];
    float *bias[ROUNDS];
    void *d_logits[ROUNDS], *d_x[ROUNDS], *d_out[ROUNDS];
    float *d_bias[ROUNDS];
    /* shared by the rounds */
    int32_t *ids, *ra_ids;
    float *w, *ra_w;
    mjt_align_bufs maps, ra_maps;
    void *ws, *ra_ws, *permuted;
} batch;

/* Every device buffer a run writes, for poisoning and snapshots. */
typedef struct observable {
    void *p;
    size_t bytes;
    char name[32];
} observable;

enum { MAX_OBS = ROUNDS + 5 + 12 }; /* the combine outputs, 5 route/permute buffers, 2 x 6 maps */

static int observables(const batch *b, observable *o)
{
    int n = 0;
    const size_t N = (size_t)(b->T * K);
    for (int r = 0; r < ROUNDS; r++) {
        o[n] = (observable){b->d_out[r], (size_t)b->T * H * 2, ""};
        snprintf(o[n++].name, sizeof o->name, "combine out[round %d]", r);
    }
    o[n++] = (observable){b->ids, 4 * N, "route ids"};
    o[n++] = (observable){b->w, 4 * N, "route weights"};
    o[n++] = (observable){b->ra_ids, 4 * N, "route_align ids"};
    o[n++] = (observable){b->ra_w, 4 * N, "route_align weights"};
    o[n++] = (observable){b->permuted, (size_t)b->cap * H * 2, "permute out"};
    static const char *const names[6] = {"counts", "offsets", "sorted_ids", "block_expert", "total_padded", "slot_of"};
    for (int i = 0; i < 6; i++) {
        o[n] = (observable){b->maps.buf[i], 4 * b->maps.len[i], ""};
        snprintf(o[n++].name, sizeof o->name, "align %s", names[i]);
        o[n] = (observable){b->ra_maps.buf[i], 4 * b->ra_maps.len[i], ""};
        snprintf(o[n++].name, sizeof o->name, "route_align %s", names[i]);
    }
    assert_true(n <= MAX_OBS);
    return n;
}

static void poison(const batch *b)
{
    observable o[MAX_OBS];
    const int n = observables(b, o);
    for (int i = 0; i < n; i++) mjt_dev_fill(o[i].p, MJT_POISON, o[i].bytes);
    mjt_sync(); /* the fills go through the legacy stream, which a non-blocking stream does not wait for */
}

/* Every observable, concatenated (malloc'ed). */
static unsigned char *snapshot(const batch *b)
{
    observable o[MAX_OBS];
    const int n = observables(b, o);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += o[i].bytes;
    unsigned char *s = malloc(total + 1), *at = s;
    assert_non_null(s);
    for (int i = 0; i < n; i++) {
        mjt_d2h(at, o[i].p, o[i].bytes);
        at += o[i].bytes;
    }
    return s;
}

static void expect_same(const batch *b, const unsigned char *want, const unsigned char *got, const char *run)
{
    observable o[MAX_OBS];
    const int n = observables(b, o);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < o[i].bytes; j++)
            if (want[at + j] != got[at + j])
                fail_msg("T=%lld, %s: %s differs from the serial run at byte %zu (0x%02x, serial 0x%02x)",
                         (long long)b->T, run, o[i].name, j, got[at + j], want[at + j]);
        at += o[i].bytes;
    }
}

static void check(moejit_status st, moejit_ctx *ctx, const char *call)
{
    if (st != MOEJIT_OK) fail_msg("%s: %s: %s", call, moejit_status_str(st), moejit_last_error(ctx));
}

static batch batch_new(mjt_rng *rng, int64_t T)
{
    batch b = {.T = T, .ra_spec = {.route = k_route, .block_size = B}};
    const size_t N = (size_t)(T * K);
    assert_int_equal(moejit_align_capacity(&k_align, T, K, &b.cap), MOEJIT_OK);
    assert_int_equal(moejit_align_workspace_bytes(&k_align, T, K, &b.ws_bytes), MOEJIT_OK);
    assert_int_equal(moejit_route_align_workspace_bytes(&b.ra_spec, T, &b.ra_ws_bytes), MOEJIT_OK);
    int64_t ra_cap;
    assert_int_equal(moejit_route_align_capacity(&b.ra_spec, T, &ra_cap), MOEJIT_OK);
    assert_int_equal(ra_cap, b.cap);
    for (int r = 0; r < ROUNDS; r++) {
        b.logits[r] = mjt_route_inputs(rng, &k_route, T, E, &b.bias[r]);
        uint16_t *x = malloc((size_t)T * H * 2 + 2);
        for (size_t i = 0; i < (size_t)T * H; i++) x[i] = mj_f32_to_bf16((float)mjt_normal(rng));
        b.x[r] = x;
        b.d_logits[r] = mjt_dev_alloc((size_t)T * E * 2);
        b.d_x[r] = mjt_dev_alloc((size_t)T * H * 2);
        b.d_out[r] = mjt_dev_alloc((size_t)T * H * 2);
        mjt_h2d(b.d_logits[r], b.logits[r], (size_t)T * E * 2);
        mjt_h2d(b.d_x[r], b.x[r], (size_t)T * H * 2);
        b.d_bias[r] = mjt_dev_alloc(4 * E);
        mjt_h2d(b.d_bias[r], b.bias[r], 4 * E);
    }
    b.ids = mjt_dev_alloc(4 * N), b.ra_ids = mjt_dev_alloc(4 * N);
    b.w = mjt_dev_alloc(4 * N), b.ra_w = mjt_dev_alloc(4 * N);
    b.maps = mjt_align_bufs_new(E, B, b.cap, (int64_t)N, 1);
    b.ra_maps = mjt_align_bufs_new(E, B, b.cap, (int64_t)N, 1);
    b.ws = b.ws_bytes ? mjt_dev_alloc(b.ws_bytes) : NULL;
    b.ra_ws = b.ra_ws_bytes ? mjt_dev_alloc(b.ra_ws_bytes) : NULL;
    b.permuted = mjt_dev_alloc((size_t)b.cap * H * 2);
    return b;
}

static void batch_free(batch *b)
{
    for (int r = 0; r < ROUNDS; r++) {
        free(b->logits[r]), free(b->x[r]), free(b->bias[r]);
        mjt_dev_free(b->d_logits[r]), mjt_dev_free(b->d_x[r]), mjt_dev_free(b->d_out[r]), mjt_dev_free(b->d_bias[r]);
    }
    mjt_dev_free(b->ids), mjt_dev_free(b->ra_ids), mjt_dev_free(b->w), mjt_dev_free(b->ra_w);
    mjt_align_bufs_free(&b->maps), mjt_align_bufs_free(&b->ra_maps);
    mjt_dev_free(b->ws), mjt_dev_free(b->ra_ws), mjt_dev_free(b->permuted);
}

/* align's maps of ids by the reference, for comparison with the device maps `dev`: sorted_ids
 * past the padded total is never written (moejit.h), so there the device's current bytes (an
 * earlier round's) are taken as they are. */
static mjt_align_bufs reference_maps(const batch *b, const mjt_align_bufs *dev, const int32_t *ids)
{
    const int64_t N = b->T * K;
    mjt_align_bufs ref = mjt_align_bufs_new(E, B, b->cap, N, 0);
    mjt_d2h(ref.buf[2], dev->buf[2], 4 * ref.len[2]);
    moejit_align_args aa = {.ids = ids, .num_tokens = b->T, .topk = K, .out = mjt_align_select(&ref, MJT_ALIGN_ALL, b->cap)};
    assert_int_equal(moejit_align_reference(&k_align, &aa), MOEJIT_OK);
    return ref;
}

/* Round r of the serial run against the references (its outputs are still in the shared buffers). */
static void check_round(const batch *b, int r)
{
    const int64_t T = b->T;
    const size_t N = (size_t)(T * K);
    char what[96];
    snprintf(what, sizeof what, "serial run, T=%lld, round %d", (long long)T, r);
    int32_t *ids = malloc(4 * N + 4), *ref_ids = malloc(4 * N + 4);
    float *w = malloc(4 * N + 4), *ref_w = malloc(4 * N + 4);
    mjt_d2h(ids, b->ids, 4 * N);
    mjt_d2h(w, b->w, 4 * N);
    /* route: the reference, within its tolerance */
    const moejit_route_args ra = {.logits = b->logits[r], .bias = b->bias[r], .ids = ref_ids, .weights = ref_w,
                                  .num_tokens = T, .row_stride = E};
    assert_int_equal(moejit_route_reference(&k_route, &ra), MOEJIT_OK);
    mjt_check_route(&k_route, T, ref_ids, ref_w, ids, w, 1e-6, what);
    /* align: exactly, on the GPU's ids */
    mjt_align_bufs ref = reference_maps(b, &b->maps, ids);
    mjt_align_compare(&b->maps, &ref, what);
    /* route_align: bit for bit route then align */
    int32_t *ra_ids = malloc(4 * N + 4);
    float *ra_w = malloc(4 * N + 4);
    mjt_d2h(ra_ids, b->ra_ids, 4 * N);
    mjt_d2h(ra_w, b->ra_w, 4 * N);
    if (memcmp(ra_ids, ids, 4 * N) || memcmp(ra_w, w, 4 * N))
        fail_msg("%s: route_align's ids or weights differ from route's", what);
    mjt_align_bufs ra_ref = reference_maps(b, &b->ra_maps, ids);
    mjt_align_compare(&b->ra_maps, &ra_ref, what);
    mjt_align_bufs_free(&ra_ref);
    /* permute: exactly, on the GPU's sorted_ids */
    const size_t pbytes = (size_t)b->cap * H * 2, obytes = (size_t)T * H * 2;
    unsigned char *perm = malloc(pbytes + 1), *ref_perm = malloc(pbytes + 1);
    mjt_d2h(perm, b->permuted, pbytes);
    const moejit_permute_args pa = {.x = b->x[r], .sorted_ids = ref.buf[2], .out = ref_perm, .num_tokens = T,
                                    .topk = K, .num_rows = b->cap};
    assert_int_equal(moejit_permute_reference(&k_permute, &pa), MOEJIT_OK);
    if (memcmp(perm, ref_perm, pbytes)) fail_msg("%s: permute differs from its reference", what);
    /* combine: exactly, on the GPU's rows, slots and weights */
    unsigned char *out = malloc(obytes + 1), *ref_out = malloc(obytes + 1);
    mjt_d2h(out, b->d_out[r], obytes);
    const moejit_combine_args ca = {.y = perm, .slot_of = ref.buf[5], .weights = w, .out = ref_out, .num_tokens = T,
                                    .topk = K, .num_rows = b->cap};
    assert_int_equal(moejit_combine_reference(&k_combine, &ca), MOEJIT_OK);
    if (memcmp(out, ref_out, obytes)) fail_msg("%s: combine differs from its reference", what);
    free(ids), free(ref_ids), free(w), free(ref_w), free(ra_ids), free(ra_w);
    free(perm), free(ref_perm), free(out), free(ref_out);
    mjt_align_bufs_free(&ref);
}

enum chain_mode { CHAIN_EAGER, CHAIN_SERIAL, CHAIN_CAPTURE };

/* The chain, ROUNDS times, on `stream`, then a synchronisation (not while capturing). SERIAL:
 * also synchronise after every launch and check each round against the references. */
static void run_chain(moejit_ctx *ctx, const batch *b, CUstream stream, enum chain_mode mode)
{
    const int serial = mode == CHAIN_SERIAL;
    const moejit_stream s = (moejit_stream)stream;
    for (int r = 0; r < ROUNDS; r++) {
        const moejit_route_args ra = {.logits = b->d_logits[r], .bias = b->d_bias[r], .ids = b->ids, .weights = b->w,
                                      .num_tokens = b->T};
        check(moejit_route(ctx, &k_route, &ra, s), ctx, "moejit_route");
        if (serial) assert_int_equal(drv->stream_synchronize(stream), CUDA_SUCCESS);
        moejit_align_args aa = {.ids = b->ids, .num_tokens = b->T, .topk = K,
                                .out = mjt_align_select(&b->maps, MJT_ALIGN_ALL, b->cap)};
        aa.out.workspace = b->ws, aa.out.workspace_bytes = b->ws_bytes;
        check(moejit_align(ctx, &k_align, &aa, s), ctx, "moejit_align");
        if (serial) assert_int_equal(drv->stream_synchronize(stream), CUDA_SUCCESS);
        const moejit_permute_args pa = {.x = b->d_x[r], .sorted_ids = b->maps.buf[2], .out = b->permuted,
                                        .num_tokens = b->T, .topk = K, .num_rows = b->cap};
        check(moejit_permute(ctx, &k_permute, &pa, s), ctx, "moejit_permute");
        if (serial) assert_int_equal(drv->stream_synchronize(stream), CUDA_SUCCESS);
        const moejit_combine_args ca = {.y = b->permuted, .slot_of = b->maps.buf[5], .weights = b->w,
                                        .out = b->d_out[r], .num_tokens = b->T, .topk = K, .num_rows = b->cap};
        check(moejit_combine(ctx, &k_combine, &ca, s), ctx, "moejit_combine");
        if (serial) assert_int_equal(drv->stream_synchronize(stream), CUDA_SUCCESS);
        moejit_route_align_args rga = {.route = {.logits = b->d_logits[r], .bias = b->d_bias[r], .ids = b->ra_ids,
                                                 .weights = b->ra_w, .num_tokens = b->T},
                                       .align = mjt_align_select(&b->ra_maps, MJT_ALIGN_ALL, b->cap)};
        rga.align.workspace = b->ra_ws, rga.align.workspace_bytes = b->ra_ws_bytes;
        check(moejit_route_align(ctx, &b->ra_spec, &rga, s), ctx, "moejit_route_align");
        if (serial) {
            assert_int_equal(drv->stream_synchronize(stream), CUDA_SUCCESS);
            check_round(b, r);
        }
    }
    if (mode != CHAIN_CAPTURE) assert_int_equal(drv->stream_synchronize(stream), CUDA_SUCCESS);
}

static moejit_ctx *open_ctx(const char *dir, int pdl)
{
    moejit_config cfg = {.cache_dir = dir, .pdl = pdl};
    moejit_ctx *ctx = NULL;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    return ctx;
}

static void test_pdl_chain_is_bit_identical(void **state)
{
    (void)state;
    if (!mjt_gpu_available()) skip();
    assert_int_equal(mj_driver_get(&drv), MOEJIT_OK);
    char dir[4096];
    mjt_tmpdir(dir);
    moejit_ctx *on = open_ctx(dir, 1), *off = open_ctx(dir, 2);
    int requested, active;
    assert_int_equal(moejit_ctx_pdl(off, &requested, &active), MOEJIT_OK);
    assert_int_equal(requested, 0);
    assert_int_equal(active, 0);
    assert_int_equal(moejit_ctx_pdl(on, &requested, &active), MOEJIT_OK);
    assert_int_equal(requested, 1);
    char arch[16];
    assert_int_equal(moejit_ctx_device_arch(on, arch, sizeof arch), MOEJIT_OK);
    /* sm_90+ with a 12.3+ driver uses it; elsewhere both contexts launch plainly (still checked) */
    assert_int_equal(active, atoi(arch + 3) >= 90 && drv->version >= 12030 && drv->launch_kernel_ex != NULL);
    printf("[ info     ] %s, driver %d: PDL %s\n", arch, drv->version,
           active ? "active" : "not available (plain launches)");

    CUstream stream;
    assert_int_equal(drv->stream_create(&stream, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
    mjt_rng rng;
    mjt_rng_init(&rng);
    int64_t fused;
    const moejit_route_align_spec ra_spec = {.route = k_route, .block_size = B};
    assert_int_equal(moejit_route_align_fused_tokens(&ra_spec, &fused), MOEJIT_OK);
    /* align: one warp (<= 128 ids), one block (<= 4096 ids), three launches; route_align fused up to `fused` */
    const int64_t ts[] = {fused < 16 ? fused : 16, 100, mjt_quick_cap(1500, 600)};
    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        batch b = batch_new(&rng, ts[t]);
        poison(&b);
        run_chain(off, &b, stream, CHAIN_SERIAL); /* serial, each round checked: the baseline */
        unsigned char *want = snapshot(&b);
        struct {
            moejit_ctx *ctx;
            const char *name;
        } ctxs[2] = {{on, "PDL on"}, {off, "PDL off"}};
        for (int c = 0; c < 2; c++) {
            char run[96];
            snprintf(run, sizeof run, "%s, eager", ctxs[c].name);
            poison(&b);
            run_chain(ctxs[c].ctx, &b, stream, CHAIN_EAGER);
            unsigned char *got = snapshot(&b);
            expect_same(&b, want, got, run);
            free(got);
            /* the legacy default stream */
            snprintf(run, sizeof run, "%s, eager on the legacy stream", ctxs[c].name);
            poison(&b);
            run_chain(ctxs[c].ctx, &b, NULL, CHAIN_EAGER);
            got = snapshot(&b);
            expect_same(&b, want, got, run);
            free(got);
            /* a CUDA graph (the kernels are loaded), replayed twice on fresh poison */
            CUgraph graph;
            CUgraphExec exec;
            assert_int_equal(drv->stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
            run_chain(ctxs[c].ctx, &b, stream, CHAIN_CAPTURE);
            assert_int_equal(drv->stream_end_capture(stream, &graph), CUDA_SUCCESS);
            assert_int_equal(drv->graph_instantiate(&exec, graph, 0), CUDA_SUCCESS);
            for (int rep = 0; rep < 2; rep++) {
                snprintf(run, sizeof run, "%s, graph replay %d", ctxs[c].name, rep);
                poison(&b);
                assert_int_equal(drv->graph_launch(exec, stream), CUDA_SUCCESS);
                assert_int_equal(drv->stream_synchronize(stream), CUDA_SUCCESS);
                got = snapshot(&b);
                expect_same(&b, want, got, run);
                free(got);
            }
            drv->graph_exec_destroy(exec), drv->graph_destroy(graph);
        }
        free(want);
        batch_free(&b);
    }
    drv->stream_destroy(stream);
    moejit_close(on), moejit_close(off);
    mjt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pdl_chain_is_bit_identical),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, NULL, NULL));
}
