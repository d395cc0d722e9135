/* GPU: route's serving options (moejit.h route steps 8-12) — padded rows from a device count,
 * placement over redundant experts, load counters, routing replay, int64/int16 ids — on the warp
 * path (several tokens a warp, a warp a token) and the block path (E > 1024), alone and together,
 * and in route_align's fused and two-launch paths. Fresh random inputs, poisoned outputs, the C
 * reference. Every test skips without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit/driver.h"
#include "moejit_reference.h"
#include "support.h"

enum { POISON = 0xab };

static int index_bytes(moejit_index_dtype d) { return d == MOEJIT_INDEX_INT64 ? 8 : d == MOEJIT_INDEX_INT16 ? 2 : 4; }

static int64_t index_at(const void *base, moejit_index_dtype d, int64_t i)
{
    if (d == MOEJIT_INDEX_INT64) return ((const int64_t *)base)[i];
    if (d == MOEJIT_INDEX_INT16) return ((const int16_t *)base)[i];
    return ((const int32_t *)base)[i];
}

/* One batch: host inputs, the reference's outputs, and device copies. */
typedef struct serving_batch {
    const moejit_route_spec *spec;
    int64_t T;
    int E, W, P, R;
    void *logits;
    float *bias;
    int32_t num_valid;
    int32_t *map, *replicas; /* [E, R], [E] */
    void *load_init;         /* [P]: what the counters hold before the launch (added to) */
    void *given;             /* [T, W] logical ids fed in (GIVEN) */
    size_t id_bytes, logical_bytes, load_bytes;
} serving_batch;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Fresh inputs for spec: ordered logits (kernel and reference choose alike, in the same order:
 * a pick's slot decides its replica), maps whose
 * replica counts stray outside [1, R] and whose entries include -1 and ids >= P, counters with
 * earlier counts, given ids that include duplicates, -1 and ids >= E. */
static serving_batch batch_new(mjt_rng *rng, const moejit_route_spec *spec, int64_t T, int32_t num_valid)
{
    serving_batch b = {.spec = spec, .T = T, .E = spec->num_experts, .W = spec->topk + spec->shared_slots};
    b.R = spec->max_replicas;
    b.P = b.R ? spec->num_physical_experts : b.E;
    b.num_valid = num_valid;
    b.logits = mjt_route_inputs_ordered(rng, spec, T, b.E, &b.bias);
    b.id_bytes = (size_t)(T * b.W) * (size_t)index_bytes(spec->id_dtype);
    b.logical_bytes = (size_t)(T * b.W) * (size_t)index_bytes(spec->logical_id_dtype);
    if (b.R) {
        b.map = xmalloc(sizeof(int32_t) * (size_t)(b.E * b.R));
        b.replicas = xmalloc(sizeof(int32_t) * (size_t)b.E);
        for (int e = 0; e < b.E; e++) b.replicas[e] = (int32_t)(mjt_next(rng) % (uint64_t)(b.R + 2)) - (e % 11 == 0);
        for (int i = 0; i < b.E * b.R; i++)
            b.map[i] = i % 29 == 5 ? -1 : i % 31 == 7 ? b.P + 3 : (int32_t)(mjt_next(rng) % (uint64_t)b.P);
    }
    if (spec->load_counter) {
        const int wide = spec->load_counter == MOEJIT_LOAD_INT64;
        b.load_bytes = (size_t)b.P * (wide ? 8 : 4);
        b.load_init = xmalloc(b.load_bytes);
        for (int e = 0; e < b.P; e++) {
            const uint64_t v = mjt_next(rng) % 1000;
            if (wide) ((int64_t *)b.load_init)[e] = (int64_t)v + ((int64_t)1 << 33); /* beyond int32 */
            else ((int32_t *)b.load_init)[e] = (int32_t)v;
        }
    }
    if (spec->replay == MOEJIT_REPLAY_GIVEN) {
        b.given = xmalloc(b.logical_bytes);
        memset(b.given, 0x7f, b.logical_bytes); /* the shared columns: never read */
        for (int64_t t = 0; t < T; t++)
            for (int k = 0; k < spec->topk; k++) {
                const uint64_t r = mjt_next(rng) % 50;
                const int64_t id = r == 0 ? -1 : r == 1 ? b.E : r == 2 ? b.E + 1000 : (int64_t)(mjt_next(rng) % (uint64_t)b.E);
                const int64_t at = t * b.W + k;
                if (spec->logical_id_dtype == MOEJIT_INDEX_INT64) ((int64_t *)b.given)[at] = id;
                else if (spec->logical_id_dtype == MOEJIT_INDEX_INT16) ((int16_t *)b.given)[at] = (int16_t)id;
                else ((int32_t *)b.given)[at] = (int32_t)id;
            }
    }
    return b;
}

static void batch_free(serving_batch *b)
{
    free(b->logits), free(b->bias), free(b->map), free(b->replicas), free(b->load_init), free(b->given);
}

/* Outputs of one run (host memory). */
typedef struct serving_out {
    void *ids, *logical, *load;
    float *w;
} serving_out;

static serving_out out_new(const serving_batch *b)
{
    serving_out o = {.ids = xmalloc(b->id_bytes), .w = xmalloc(sizeof(float) * (size_t)(b->T * b->W))};
    if (b->spec->replay) o.logical = xmalloc(b->logical_bytes);
    if (b->load_bytes) o.load = xmalloc(b->load_bytes);
    return o;
}

static void out_free(serving_out *o) { free(o->ids), free(o->w), free(o->logical), free(o->load); }

static void reference(const serving_batch *b, serving_out *o)
{
    if (o->logical && b->given) memcpy(o->logical, b->given, b->logical_bytes);
    if (o->load) memcpy(o->load, b->load_init, b->load_bytes);
    const moejit_route_args a = {.logits = b->logits, .bias = b->bias, .ids = o->ids, .weights = o->w,
                                 .num_tokens = b->T, .row_stride = b->E, .num_valid = &b->num_valid,
                                 .logical_to_physical = b->map, .replica_count = b->replicas,
                                 .expert_load = o->load, .logical_ids = o->logical};
    const moejit_status st = moejit_route_reference(b->spec, &a);
    if (st != MOEJIT_OK) fail_msg("reference: %s: %s", moejit_status_str(st), moejit_last_error(NULL));
}

/* Device buffers of one launch. */
typedef struct serving_dev {
    void *logits, *bias, *ids, *w, *num_valid, *map, *replicas, *load, *logical;
} serving_dev;

static void *dev_copy(const void *src, size_t bytes)
{
    if (!src) return NULL;
    void *d = mjt_dev_alloc(bytes);
    mjt_h2d(d, src, bytes);
    return d;
}

static serving_dev dev_new(const serving_batch *b)
{
    const size_t elem = b->spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    serving_dev d = {
        .logits = dev_copy(b->logits, (size_t)(b->T * b->E) * elem),
        .bias = dev_copy(b->bias, sizeof(float) * (size_t)b->E),
        .ids = mjt_dev_alloc(b->id_bytes),
        .w = mjt_dev_alloc(sizeof(float) * (size_t)(b->T * b->W)),
        .num_valid = dev_copy(&b->num_valid, 4),
        .map = dev_copy(b->map, sizeof(int32_t) * (size_t)(b->E * b->R)),
        .replicas = dev_copy(b->replicas, sizeof(int32_t) * (size_t)b->E),
        .load = dev_copy(b->load_init, b->load_bytes),
    };
    if (b->spec->replay == MOEJIT_REPLAY_GIVEN) d.logical = dev_copy(b->given, b->logical_bytes);
    else if (b->spec->replay) d.logical = mjt_dev_alloc(b->logical_bytes);
    return d;
}

static void dev_poison(const serving_batch *b, serving_dev *d)
{
    mjt_dev_fill(d->ids, POISON, b->id_bytes);
    mjt_dev_fill(d->w, 0xff, sizeof(float) * (size_t)(b->T * b->W)); /* NaN */
    if (b->spec->replay == MOEJIT_REPLAY_RECORD) mjt_dev_fill(d->logical, POISON, b->logical_bytes);
    if (b->load_bytes) mjt_h2d(d->load, b->load_init, b->load_bytes);
}

static moejit_route_args dev_args(const serving_batch *b, const serving_dev *d)
{
    return (moejit_route_args){.logits = d->logits, .bias = d->bias, .ids = d->ids, .weights = d->w,
                               .num_tokens = b->T, .row_stride = b->E, .num_valid = d->num_valid,
                               .logical_to_physical = d->map, .replica_count = d->replicas,
                               .expert_load = d->load, .logical_ids = d->logical};
}

static void dev_fetch(const serving_batch *b, const serving_dev *d, serving_out *o)
{
    mjt_d2h(o->ids, d->ids, b->id_bytes);
    mjt_d2h(o->w, d->w, sizeof(float) * (size_t)(b->T * b->W));
    if (o->logical) mjt_d2h(o->logical, d->logical, b->logical_bytes);
    if (o->load) mjt_d2h(o->load, d->load, b->load_bytes);
}

static void dev_free(serving_dev *d)
{
    mjt_dev_free(d->logits), mjt_dev_free(d->bias), mjt_dev_free(d->ids), mjt_dev_free(d->w);
    mjt_dev_free(d->num_valid), mjt_dev_free(d->map), mjt_dev_free(d->replicas), mjt_dev_free(d->load);
    mjt_dev_free(d->logical);
}

/* ids, logical ids and counters exactly; weights to f32 math's accuracy, finite, slot by slot. */
static void compare(const serving_batch *b, const serving_out *got, const serving_out *ref, const char *what)
{
    const moejit_route_spec *s = b->spec;
    for (int64_t i = 0; i < b->T * b->W; i++) {
        const int64_t g = index_at(got->ids, s->id_dtype, i), r = index_at(ref->ids, s->id_dtype, i);
        if (g != r)
            fail_msg("%s: row %lld slot %lld: id %lld, reference %lld", what, (long long)(i / b->W),
                     (long long)(i % b->W), (long long)g, (long long)r);
        const double gw = got->w[i], rw = ref->w[i], tol = (s->softcap > 0 ? 1e-5 : 1e-6) * fabs(rw) + 1e-37;
        if (!isfinite(gw) || !(fabs(gw - rw) <= tol))
            fail_msg("%s: row %lld slot %lld (id %lld): weight %.9g, reference %.9g", what, (long long)(i / b->W),
                     (long long)(i % b->W), (long long)g, gw, rw);
    }
    if (s->replay == MOEJIT_REPLAY_RECORD || s->replay == MOEJIT_REPLAY_GIVEN)
        for (int64_t i = 0; i < b->T * b->W; i++) {
            const int64_t g = index_at(got->logical, s->logical_id_dtype, i);
            const int64_t r = index_at(ref->logical, s->logical_id_dtype, i);
            if (g != r)
                fail_msg("%s: row %lld slot %lld: logical id %lld, reference %lld", what, (long long)(i / b->W),
                         (long long)(i % b->W), (long long)g, (long long)r);
        }
    if (got->load && memcmp(got->load, ref->load, b->load_bytes)) {
        for (int e = 0; e < b->P; e++) {
            const int64_t g = s->load_counter == MOEJIT_LOAD_INT64 ? ((int64_t *)got->load)[e] : ((int32_t *)got->load)[e];
            const int64_t r = s->load_counter == MOEJIT_LOAD_INT64 ? ((int64_t *)ref->load)[e] : ((int32_t *)ref->load)[e];
            if (g != r) fail_msg("%s: load of physical expert %d: %lld, reference %lld", what, e, (long long)g, (long long)r);
        }
    }
}

static void describe(const moejit_route_spec *s, int64_t T, int32_t n, char *what, size_t cap)
{
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE, .route = *s};
    moejit_kernel_name(&d, what, cap);
    snprintf(what + strlen(what), cap - strlen(what), " T=%lld num_valid=%d", (long long)T, n);
}

/* One spec, one batch, each num_valid of the list: launch, compare with the reference. */
static void check_spec(mjt_rng *rng, const moejit_route_spec *spec, int64_t T)
{
    T = mjt_quick_cap(T, 48);
    const int32_t counts[] = {(int32_t)T, 0, (int32_t)(T + 5), (int32_t)(T / 3), -4};
    const int runs = spec->padded ? 5 : 1;
    for (int c = 0; c < runs; c++) {
        serving_batch b = batch_new(rng, spec, T, counts[c]);
        serving_dev d = dev_new(&b);
        dev_poison(&b, &d);
        moejit_route_args a = dev_args(&b, &d);
        char what[256];
        describe(spec, T, counts[c], what, sizeof what);
        const moejit_status st = moejit_route(mjt_gpu_ctx, spec, &a, NULL);
        if (st != MOEJIT_OK) fail_msg("%s: %s: %s", what, moejit_status_str(st), moejit_last_error(NULL));
        mjt_sync();
        serving_out got = out_new(&b), ref = out_new(&b);
        dev_fetch(&b, &d, &got);
        reference(&b, &ref);
        compare(&b, &got, &ref, what);
        out_free(&got), out_free(&ref), dev_free(&d), batch_free(&b);
    }
}

/* The base shapes: several tokens a warp (E = 8), grouped sigmoid with a bias (deepseek-v3),
 * softmax, score-after-top-k with shared slots, the block path (E = 2048). */
static const moejit_route_spec k_bases[] = {
    {.num_experts = 8, .topk = 2, .score = MOEJIT_SCORE_SOFTMAX, .renormalize = 1},
    {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .num_groups = 8, .topk_groups = 4,
     .group_score = MOEJIT_GROUP_SCORE_TOP2_SUM, .has_bias = 1, .renormalize = 1, .scale_output = 1,
     .routed_scaling_factor = 2.5f, .dtype = MOEJIT_DTYPE_BF16},
    {.num_experts = 128, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX, .dtype = MOEJIT_DTYPE_F16},
    {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .has_bias = 1, .renormalize = 1,
     .shared_slots = 1, .routed_scaling_factor = 2.827f, .scale_output = 1},
    {.num_experts = 64, .topk = 4, .score = MOEJIT_SCORE_SOFTMAX, .score_after_topk = 1, .shared_slots = 2,
     .routed_scaling_factor = 2.0f},
    {.num_experts = 160, .topk = 6, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .softcap = 30.0f, .renormalize = 1},
    {.num_experts = 2048, .topk = 8, .score = MOEJIT_SCORE_SOFTMAX, .renormalize = 1},
    {.num_experts = 2048, .topk = 4, .score = MOEJIT_SCORE_SIGMOID, .num_groups = 16, .topk_groups = 4,
     .has_bias = 1},
};
enum { N_BASES = sizeof k_bases / sizeof k_bases[0] };

/* The options, alone and all together. */
static moejit_route_spec with_option(moejit_route_spec s, int option)
{
    const int E = s.num_experts;
    switch (option) {
    case 0: s.padded = 1; break;
    case 1: s.id_dtype = MOEJIT_INDEX_INT64; break;
    case 2: s.id_dtype = MOEJIT_INDEX_INT16; break;
    case 3: s.max_replicas = 3, s.num_physical_experts = E + E / 4 + 1; break;
    case 4: s.load_counter = MOEJIT_LOAD_INT32; break;
    case 5: s.replay = MOEJIT_REPLAY_RECORD, s.logical_id_dtype = MOEJIT_INDEX_INT16; break;
    case 6: s.replay = MOEJIT_REPLAY_GIVEN; break;
    default: /* everything at once (placement with loads on physical experts, int64 everywhere) */
        s.padded = 1, s.id_dtype = MOEJIT_INDEX_INT64, s.max_replicas = 4, s.num_physical_experts = E + 32;
        s.load_counter = MOEJIT_LOAD_INT64;
        s.replay = option == 7 ? MOEJIT_REPLAY_RECORD : MOEJIT_REPLAY_GIVEN;
        s.logical_id_dtype = MOEJIT_INDEX_INT64;
        break;
    }
    return s;
}
enum { N_OPTIONS = 9 };

static void test_options_on_every_path(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    static moejit_kernel_desc descs[N_BASES * N_OPTIONS];
    static moejit_route_spec specs[N_BASES * N_OPTIONS];
    int n = 0;
    for (int b = 0; b < N_BASES; b++)
        for (int o = 0; o < N_OPTIONS; o++) {
            specs[n] = with_option(k_bases[b], o);
            descs[n] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE, .route = specs[n]};
            n++;
        }
    assert_int_equal(moejit_prewarm(mjt_gpu_ctx, descs, (size_t)n, NULL, NULL), MOEJIT_OK);
    for (int i = 0; i < n; i++) {
        check_spec(&rng, &specs[i], 1);
        check_spec(&rng, &specs[i], specs[i].num_experts > 1024 ? 37 : 301);
    }
}

/* Replay: what route chose, given back, weighs the same bit for bit (every scoring mode). */
static void test_replay_bit_identical(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int b = 0; b < N_BASES; b++)
        for (int sa = 0; sa < 2; sa++) {
            moejit_route_spec rec = k_bases[b];
            rec.score_after_topk = rec.score_after_topk || sa;
            rec.replay = MOEJIT_REPLAY_RECORD;
            moejit_route_spec given = rec;
            given.replay = MOEJIT_REPLAY_GIVEN;
            const int64_t T = mjt_quick_cap(rec.num_experts > 1024 ? 40 : 500, 40);
            serving_batch bt = batch_new(&rng, &rec, T, 0);
            serving_dev d = dev_new(&bt);
            dev_poison(&bt, &d);
            moejit_route_args a = dev_args(&bt, &d);
            assert_int_equal(moejit_route(mjt_gpu_ctx, &rec, &a, NULL), MOEJIT_OK);
            mjt_sync();
            serving_out first = out_new(&bt), second = out_new(&bt);
            dev_fetch(&bt, &d, &first);
            mjt_dev_fill(d.w, 0xff, sizeof(float) * (size_t)(T * bt.W));
            mjt_dev_fill(d.ids, POISON, bt.id_bytes);
            assert_int_equal(moejit_route(mjt_gpu_ctx, &given, &a, NULL), MOEJIT_OK); /* d.logical: what rec wrote */
            mjt_sync();
            dev_fetch(&bt, &d, &second);
            char what[256];
            describe(&given, T, 0, what, sizeof what);
            if (memcmp(first.ids, second.ids, bt.id_bytes)) fail_msg("%s: ids differ from the recorded run", what);
            for (int64_t i = 0; i < T * bt.W; i++)
                if (memcmp(&first.w[i], &second.w[i], 4))
                    fail_msg("%s: row %lld slot %lld: weight %.9g given, %.9g chosen (must be bit-identical)", what,
                             (long long)(i / bt.W), (long long)(i % bt.W), (double)second.w[i], (double)first.w[i]);
            out_free(&first), out_free(&second), dev_free(&d), batch_free(&bt);
        }
}

/* A CUDA graph captured once serves every count: the count is read by the kernel. */
static void test_padded_graph_replay(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    const mj_driver *drv;
    assert_int_equal(mj_driver_get(&drv), MOEJIT_OK);
    mjt_rng rng;
    mjt_rng_init(&rng);
    moejit_route_spec spec = with_option(k_bases[1], 0);
    spec.load_counter = MOEJIT_LOAD_INT32;
    const int64_t T = 256;
    serving_batch b = batch_new(&rng, &spec, T, (int32_t)T);
    serving_dev d = dev_new(&b);
    moejit_route_args a = dev_args(&b, &d);
    assert_int_equal(moejit_route(mjt_gpu_ctx, &spec, &a, NULL), MOEJIT_OK); /* load before capture */
    mjt_sync();
    CUstream s;
    CUgraph graph;
    CUgraphExec exec;
    assert_int_equal(drv->stream_create(&s, CU_STREAM_NON_BLOCKING), CUDA_SUCCESS);
    assert_int_equal(drv->stream_begin_capture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), CUDA_SUCCESS);
    assert_int_equal(moejit_route(mjt_gpu_ctx, &spec, &a, (moejit_stream)s), MOEJIT_OK);
    assert_int_equal(drv->stream_end_capture(s, &graph), CUDA_SUCCESS);
    assert_int_equal(drv->graph_instantiate(&exec, graph, 0), CUDA_SUCCESS);
    const int32_t counts[] = {1, 200, 0, 256, 77};
    for (int c = 0; c < 5; c++) {
        b.num_valid = counts[c];
        mjt_h2d(d.num_valid, &b.num_valid, 4);
        dev_poison(&b, &d);
        mjt_sync();
        assert_int_equal(drv->graph_launch(exec, s), CUDA_SUCCESS);
        assert_int_equal(drv->stream_synchronize(s), CUDA_SUCCESS);
        serving_out got = out_new(&b), ref = out_new(&b);
        dev_fetch(&b, &d, &got);
        reference(&b, &ref);
        char what[256];
        describe(&spec, T, counts[c], what, sizeof what);
        strncat(what, " (graph replay)", sizeof what - strlen(what) - 1);
        compare(&b, &got, &ref, what);
        out_free(&got), out_free(&ref);
    }
    drv->graph_exec_destroy(exec), drv->graph_destroy(graph), drv->stream_destroy(s);
    dev_free(&d), batch_free(&b);
}

/* route_align with the options: the fused path (T up to its limit) and the two-launch path; align
 * sees physical ids over P + S experts and drops the padded rows' -1. */
static void test_route_align_options(void **state)
{
    (void)state;
    if (!mjt_gpu_ctx) skip();
    mjt_rng rng;
    mjt_rng_init(&rng);
    for (int b = 0; b < 6; b++)
        for (int o = 0; o < N_OPTIONS; o++) {
            moejit_route_align_spec ras = {.route = with_option(k_bases[b], o), .block_size = 16};
            int64_t fused;
            assert_int_equal(moejit_route_align_fused_tokens(&ras, &fused), MOEJIT_OK);
            const int64_t sizes[] = {1, fused, fused + 1, 200};
            for (int z = 0; z < 4; z++) {
                const int64_t T = sizes[z] < 1 ? 1 : sizes[z];
                serving_batch bt = batch_new(&rng, &ras.route, T, (int32_t)(T > 2 ? T - 2 : T));
                serving_dev d = dev_new(&bt);
                dev_poison(&bt, &d);
                const int experts = bt.P + ras.route.shared_slots;
                const moejit_align_spec as = {.num_experts = experts, .block_size = 16, .id_dtype = ras.route.id_dtype};
                int64_t cap;
                size_t ws_bytes;
                assert_int_equal(moejit_route_align_capacity(&ras, T, &cap), MOEJIT_OK);
                assert_int_equal(moejit_route_align_workspace_bytes(&ras, T, &ws_bytes), MOEJIT_OK);
                void *ws = ws_bytes ? mjt_dev_alloc(ws_bytes) : NULL;
                mjt_align_bufs dev = mjt_align_bufs_new(experts, 16, cap, T * bt.W, 1);
                moejit_route_align_args ra = {.route = dev_args(&bt, &d), .align = mjt_align_select(&dev, MJT_ALIGN_ALL, cap)};
                ra.align.workspace = ws, ra.align.workspace_bytes = ws_bytes;
                char what[256];
                describe(&ras.route, T, bt.num_valid, what, sizeof what);
                strncat(what, z < 2 ? " (route_align, fused)" : " (route_align, two launches)", sizeof what - strlen(what) - 1);
                const moejit_status st = moejit_route_align(mjt_gpu_ctx, &ras, &ra, NULL);
                if (st != MOEJIT_OK) fail_msg("%s: %s: %s", what, moejit_status_str(st), moejit_last_error(NULL));
                mjt_sync();
                serving_out got = out_new(&bt), ref = out_new(&bt);
                dev_fetch(&bt, &d, &got);
                reference(&bt, &ref);
                compare(&bt, &got, &ref, what);
                mjt_align_bufs href = mjt_align_bufs_new(experts, 16, cap, T * bt.W, 0);
                const moejit_align_args ha = {.ids = ref.ids, .num_tokens = T, .topk = bt.W,
                                              .out = mjt_align_select(&href, MJT_ALIGN_ALL, cap)};
                assert_int_equal(moejit_align_reference(&as, &ha), MOEJIT_OK);
                mjt_align_compare(&dev, &href, what);
                mjt_align_bufs_free(&href), mjt_align_bufs_free(&dev), mjt_dev_free(ws);
                out_free(&got), out_free(&ref), dev_free(&d), batch_free(&bt);
            }
        }
}

int main(int argc, char **argv)
{
    (void)argc, (void)argv;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_on_every_path),
        cmocka_unit_test(test_replay_bit_identical),
        cmocka_unit_test(test_padded_graph_replay),
        cmocka_unit_test(test_route_align_options),
    };
    return mjt_gpu_suite_status(cmocka_run_group_tests(tests, mjt_gpu_setup, mjt_gpu_teardown));
}
