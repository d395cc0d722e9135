/* GPU reliability (issue 8): 32 threads launching 20 route shapes at once from a cold cache,
 * first uses included — one compile per kernel, no deadlock (bounded wait), every result equal
 * to the C reference; one process driving two GPUs with the same shapes, one after the other and
 * at the same time — each device's results correct, each kernel compiled and loaded once (a
 * CUlibrary is context-independent; the driver loads it into each context on first launch).
 * Every test skips without the device(s) it needs. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit/driver.h"
#include "stress.h"

enum { THREADS = 32, SHAPES = 20, TOKENS = 97 };

static const mj_driver *drv(void)
{
    const mj_driver *d = NULL;
    assert_int_equal(mj_driver_get(&d), MOEJIT_OK);
    return d;
}

/* Route shapes of every kind: sizes, top-k, groups, scores, dtypes, bias, shared slots. */
static moejit_route_spec shape(int i)
{
    static const int es[] = {8, 60, 64, 128, 160, 256, 384, 512, 1000, 2048};
    moejit_route_spec s = {0};
    s.num_experts = es[i % 10];
    s.topk = 1 + (i * 3) % 8;
    s.score = (moejit_score)(i % 3);
    s.dtype = (moejit_dtype)((i / 3) % 3);
    s.has_bias = i % 2;
    s.renormalize = (i / 2) % 2;
    if (i % 4 == 1 && s.num_experts % 8 == 0) s.num_groups = 8, s.topk_groups = 4;
    if (s.num_groups && s.topk > s.topk_groups * s.num_experts / s.num_groups) s.topk = 2;
    s.shared_slots = i % 5 == 0;
    s.routed_scaling_factor = s.shared_slots ? 2.5f : 0.0f;
    return s;
}

typedef struct case_data {
    moejit_route_spec spec;
    void *logits;     /* host */
    float *bias;      /* host */
    int32_t *ref_ids; /* the reference */
    float *ref_w;
} case_data;

static void make_cases(case_data *c, int n)
{
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int i = 0; i < n; i++) {
        c[i].spec = shape(i);
        const int W = c[i].spec.topk + c[i].spec.shared_slots;
        c[i].logits = mjt_route_inputs(&rng, &c[i].spec, TOKENS, c[i].spec.num_experts, &c[i].bias);
        c[i].ref_ids = malloc(sizeof(int32_t) * TOKENS * (size_t)W);
        c[i].ref_w = malloc(sizeof(float) * TOKENS * (size_t)W);
        mjt_route_reference_parallel(&c[i].spec, c[i].logits, TOKENS, c[i].spec.num_experts, c[i].bias, c[i].ref_ids,
                                     c[i].ref_w);
    }
}

static void free_cases(case_data *c, int n)
{
    for (int i = 0; i < n; i++) free(c[i].logits), free(c[i].bias), free(c[i].ref_ids), free(c[i].ref_w);
}

/* Route case c on the calling thread's current context and stream; the outputs into ids / w. */
static moejit_status route_once(moejit_ctx *ctx, const case_data *c, CUstream stream, int32_t *ids, float *w)
{
    const mj_driver *d = drv();
    const moejit_route_spec *s = &c->spec;
    const int E = s->num_experts, W = s->topk + s->shared_slots;
    const size_t in_bytes = (size_t)TOKENS * (size_t)E * (s->dtype == MOEJIT_DTYPE_F32 ? 4 : 2);
    const size_t out_bytes = (size_t)TOKENS * (size_t)W * 4;
    CUdeviceptr dl = 0, db = 0, di = 0, dw = 0;
    moejit_status st = MOEJIT_ERR_CUDA;
    if (d->mem_alloc(&dl, in_bytes) || d->mem_alloc(&di, out_bytes) || d->mem_alloc(&dw, out_bytes) ||
        (s->has_bias && d->mem_alloc(&db, sizeof(float) * (size_t)E)))
        goto out;
    if (d->memcpy_htod(dl, c->logits, in_bytes) || (s->has_bias && d->memcpy_htod(db, c->bias, sizeof(float) * (size_t)E)) ||
        d->memset_d8(di, 0xff, out_bytes) || d->memset_d8(dw, 0xff, out_bytes))
        goto out;
    moejit_route_args a = {.logits = (void *)(uintptr_t)dl, .bias = (float *)(uintptr_t)db, .ids = (int32_t *)(uintptr_t)di,
                           .weights = (float *)(uintptr_t)dw, .num_tokens = TOKENS};
    st = moejit_route(ctx, s, &a, (moejit_stream)stream);
    if (st != MOEJIT_OK) goto out;
    st = MOEJIT_ERR_CUDA;
    if (d->stream_synchronize(stream) || d->memcpy_dtoh(ids, di, out_bytes) || d->memcpy_dtoh(w, dw, out_bytes)) goto out;
    st = MOEJIT_OK;
out:
    if (dl) d->mem_free(dl);
    if (db) d->mem_free(db);
    if (di) d->mem_free(di);
    if (dw) d->mem_free(dw);
    return st;
}

/* ---- 32 threads, 20 shapes ---------------------------------------------------------------- */

typedef struct thread_run {
    moejit_ctx *ctx;
    case_data *cases;
    int ncases;
    CUcontext cu; /* the context every thread makes current */
    atomic_int failures;
    char why[512];
    int32_t *ids[THREADS][SHAPES];
    float *w[THREADS][SHAPES];
} thread_run;

static int gpu_thread(int index, void *user)
{
    thread_run *r = user;
    const mj_driver *d = drv();
    CUstream stream = NULL;
    d->ctx_set_current(r->cu);
    /* A blocking stream: it waits for the legacy stream, where route_once's copies and poison go. */
    d->stream_create(&stream, 0);
    for (int j = 0; j < r->ncases; j++) {
        const int k = (j + index) % r->ncases;
        const moejit_status st = route_once(r->ctx, &r->cases[k], stream, r->ids[index][k], r->w[index][k]);
        if (st != MOEJIT_OK && atomic_fetch_add(&r->failures, 1) == 0)
            snprintf(r->why, sizeof r->why, "thread %d, shape %d: %s: %s", index, k, moejit_status_str(st),
                     moejit_last_error(r->ctx));
    }
    d->stream_destroy(stream);
    return 0;
}

static void test_gpu_threads(void **state)
{
    (void)state;
    if (!mjt_gpu_available()) skip();
    char dir[4096];
    mjt_tmpdir(dir);
    thread_run *r = calloc(1, sizeof *r);
    case_data cases[SHAPES];
    make_cases(cases, SHAPES);
    r->cases = cases, r->ncases = SHAPES;
    moejit_config cfg = {.cache_dir = dir};
    assert_int_equal(moejit_open(&cfg, &r->ctx), MOEJIT_OK);
    assert_int_equal(drv()->ctx_get_current(&r->cu), CUDA_SUCCESS);
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < SHAPES; k++) {
            const int W = cases[k].spec.topk + cases[k].spec.shared_slots;
            r->ids[t][k] = malloc(sizeof(int32_t) * TOKENS * (size_t)W);
            r->w[t][k] = malloc(sizeof(float) * TOKENS * (size_t)W);
        }
    /* compute-sanitizer serialises every launch: fewer threads there (quick mode), the same races */
    const int threads = mjt_quick() ? 6 : THREADS;
    mjt_run_threads(threads, gpu_thread, r, 600);
    if (atomic_load(&r->failures)) fail_msg("%d failed launches; first: %s", atomic_load(&r->failures), r->why);
    for (int t = 0; t < threads; t++)
        for (int k = 0; k < SHAPES; k++) {
            char what[96];
            snprintf(what, sizeof what, "thread %d, shape %d", t, k);
            mjt_check_route(&cases[k].spec, TOKENS, cases[k].ref_ids, cases[k].ref_w, r->ids[t][k], r->w[t][k], 1e-6,
                            what);
        }
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < SHAPES; k++) free(r->ids[t][k]), free(r->w[t][k]);
    moejit_stats s;
    moejit_ctx_stats(r->ctx, &s);
    assert_int_equal(s.compiles, SHAPES); /* cold cache: one compile per kernel */
    assert_int_equal(s.kernels, SHAPES);
    assert_int_equal(s.launches, threads * SHAPES);
    fprintf(stderr, "[ figures  ] GPU: %d threads x %d shapes: launches=%llu compiles=%llu kernels=%llu wrong=0\n",
            threads, SHAPES, (unsigned long long)s.launches, (unsigned long long)s.compiles,
            (unsigned long long)s.kernels);
    moejit_close(r->ctx);
    free(r);
    free_cases(cases, SHAPES);
    mjt_rmtree(dir);
}

/* ---- two GPUs ------------------------------------------------------------------------------- */

enum { DEV_SHAPES = 12 };

typedef struct device_run {
    moejit_ctx *ctx;
    case_data *cases;
    CUcontext cu;
    int device;
    int failures;
    char why[512];
    int32_t *ids[DEV_SHAPES];
    float *w[DEV_SHAPES];
} device_run;

static int run_device(int index, void *user)
{
    device_run *r = (device_run *)user + index;
    const mj_driver *d = drv();
    d->ctx_set_current(r->cu);
    for (int k = 0; k < DEV_SHAPES; k++) {
        const int W = r->cases[k].spec.topk + r->cases[k].spec.shared_slots;
        if (!r->ids[k]) r->ids[k] = malloc(sizeof(int32_t) * TOKENS * (size_t)W), r->w[k] = malloc(sizeof(float) * TOKENS * (size_t)W);
        const moejit_status st = route_once(r->ctx, &r->cases[k], NULL, r->ids[k], r->w[k]);
        if (st != MOEJIT_OK && !r->failures++)
            snprintf(r->why, sizeof r->why, "device %d, shape %d: %s: %s", r->device, k, moejit_status_str(st),
                     moejit_last_error(r->ctx));
    }
    return r->failures;
}

static void check_device(device_run *r, const char *phase)
{
    if (r->failures) fail_msg("%s: %s", phase, r->why);
    for (int k = 0; k < DEV_SHAPES; k++) {
        char what[96];
        snprintf(what, sizeof what, "%s, device %d, shape %d", phase, r->device, k);
        mjt_check_route(&r->cases[k].spec, TOKENS, r->cases[k].ref_ids, r->cases[k].ref_w, r->ids[k], r->w[k], 1e-6, what);
    }
}

static void test_two_gpus(void **state)
{
    (void)state;
    if (!mjt_gpu_available()) skip();
    const mj_driver *d = drv();
    int count = 0;
    d->device_get_count(&count);
    if (count < 2) skip();
    char dir[4096];
    mjt_tmpdir(dir);
    case_data cases[DEV_SHAPES];
    make_cases(cases, DEV_SHAPES);
    moejit_config cfg = {.cache_dir = dir};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    device_run runs[2];
    memset(runs, 0, sizeof runs);
    int ccs[2];
    for (int i = 0; i < 2; i++) {
        CUdevice dev;
        assert_int_equal(d->device_get(&dev, i), CUDA_SUCCESS);
        assert_int_equal(d->primary_ctx_retain(&runs[i].cu, dev), CUDA_SUCCESS);
        assert_int_equal(mj_driver_device_cc(d, dev, &ccs[i]), MOEJIT_OK);
        runs[i].ctx = ctx, runs[i].cases = cases, runs[i].device = i;
    }
    /* one device after the other */
    for (int i = 0; i < 2; i++) run_device(i, runs);
    for (int i = 0; i < 2; i++) check_device(&runs[i], "sequential");
    /* both at once, a thread per device (bounded wait) */
    mjt_run_threads(2, run_device, runs, 600);
    for (int i = 0; i < 2; i++) check_device(&runs[i], "concurrent");

    moejit_stats s;
    moejit_ctx_stats(ctx, &s);
    const int archs = ccs[0] == ccs[1] ? 1 : 2;
    /* compiled and loaded once per arch, not per device or per launch */
    assert_int_equal(s.compiles, DEV_SHAPES * archs);
    assert_int_equal(s.kernels, DEV_SHAPES * archs);
    assert_int_equal(s.launches, 4 * DEV_SHAPES);
    fprintf(stderr, "[ figures  ] two GPUs (cc %d, %d): shapes=%d launches=%llu compiles=%llu kernels=%llu wrong=0\n",
            ccs[0], ccs[1], DEV_SHAPES, (unsigned long long)s.launches, (unsigned long long)s.compiles,
            (unsigned long long)s.kernels);
    moejit_close(ctx);
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < DEV_SHAPES; k++) free(runs[i].ids[k]), free(runs[i].w[k]);
        CUdevice dev;
        d->device_get(&dev, i);
        d->primary_ctx_release(dev);
    }
    d->ctx_set_current(NULL);
    free_cases(cases, DEV_SHAPES);
    mjt_rmtree(dir);
}

/* Without a GPU: the shapes the GPU tests use are valid (so a skipped run still checks them). */
static void test_shapes_valid(void **state)
{
    (void)state;
    for (int i = 0; i < SHAPES; i++) {
        moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = shape(i)};
        if (moejit_validate(&d) != MOEJIT_OK) fail_msg("shape %d: %s", i, moejit_last_error(NULL));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shapes_valid),
        cmocka_unit_test(test_gpu_threads),
        cmocka_unit_test(test_two_gpus),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, NULL, NULL));
}
