/* Codegen and NVRTC (CPU only): the generated source has every size as a constant and an entry
 * named after the shape, and every shape of the sweep compiles to an sm_90a cubin with the real
 * options. */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/ops.h"
#include "jit/codegen.h"
#include "cache/store.h"
#include "support.h"

static void test_source_is_specialised(void **state)
{
    (void)state;
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE};
    d.route.num_experts = 384, d.route.topk = 8, d.route.score = MOEJIT_SCORE_SIGMOID, d.route.dtype = MOEJIT_DTYPE_BF16;
    char *src = NULL;
    size_t len = 0;
    assert_int_equal(moejit_source(NULL, &d, &src, &len), MOEJIT_OK);
    assert_int_equal(strlen(src), len);
    assert_non_null(strstr(src, "static constexpr int kExperts = 384;"));
    assert_non_null(strstr(src, "static constexpr int kTopK = 8;"));
    assert_non_null(strstr(src, "typedef mj::BF16 Dtype;"));
    assert_non_null(strstr(src, "extern \"C\" __global__ void __launch_bounds__(128) moejit_route_sigmoid_e384_k8_bf16("));
    /* Self-contained: no include, so `moejit source > k.cu && nvcc k.cu` works and NVRTC needs no headers. */
    assert_null(strstr(src, "\n#include"));
    moejit_free(src);
    /* Same descriptor, same text; another shape, another text. */
    char *again, *other;
    assert_int_equal(moejit_source(NULL, &d, &again, NULL), MOEJIT_OK);
    d.route.num_experts = 385;
    assert_int_equal(moejit_source(NULL, &d, &other, NULL), MOEJIT_OK);
    assert_int_not_equal(strcmp(again, other), 0);
    assert_non_null(strstr(other, "kExperts = 385;"));
    moejit_free(again);
    moejit_free(other);
}

typedef struct sweep {
    moejit_kernel_desc *descs;
    int n;
} sweep;

static sweep route_sweep(void)
{
    static const int es[] = {1, 2, 8, 60, 64, 128, 160, 256, 384, 512, 1000, 1024};
    static const int ks[] = {1, 2, 4, 8, 10, 16, 32};
    static const moejit_dtype dts[] = {MOEJIT_DTYPE_F32, MOEJIT_DTYPE_BF16, MOEJIT_DTYPE_F16};
    static const moejit_score scs[] = {MOEJIT_SCORE_SOFTMAX, MOEJIT_SCORE_SIGMOID};
    sweep s = {calloc(12 * 7 * 3 * 2, sizeof(moejit_kernel_desc)), 0};
    assert_non_null(s.descs);
    for (int e = 0; e < 12; e++)
        for (int k = 0; k < 7; k++) {
            if (ks[k] > es[e]) continue;
            for (int d = 0; d < 3; d++)
                for (int c = 0; c < 2; c++) {
                    moejit_kernel_desc *x = &s.descs[s.n++];
                    x->op = MOEJIT_OP_ROUTE;
                    x->route.num_experts = es[e];
                    x->route.topk = ks[k];
                    x->route.dtype = dts[d];
                    x->route.score = scs[c];
                    x->route.renormalize = (e + k) % 2; /* both settings across the sweep */
                }
        }
    return s;
}

/* 1 if the NUL-terminated name occurs in the cubin's string tables. */
static int cubin_has_symbol(const uint8_t *cubin, size_t len, const char *name)
{
    const size_t n = strlen(name) + 1; /* with the NUL: not a prefix of a longer name */
    for (size_t i = 0; i + n <= len; i++)
        if (cubin[i] == (uint8_t)name[0] && !memcmp(cubin + i, name, n)) return 1;
    return 0;
}

/* Prewarm a sweep for `arch` into `dir`, then check each entry on disk: compiled now, a cubin for
 * sm_<sm> holding every entry point of the kernel's plan (a missing one would fail only at load time
 * on a GPU), shared memory within an H100's 227 KiB. Returns the results (free them). */
static moejit_prewarm_result *prewarm_and_verify_for(moejit_ctx *ctx, const char *dir, const sweep *s, const char *arch,
                                                      int sm)
{
    moejit_prewarm_result *res = calloc((size_t)s->n, sizeof *res);
    moejit_status st = moejit_prewarm(ctx, s->descs, (size_t)s->n, arch, res);
    for (int i = 0; i < s->n; i++)
        if (res[i].status != MOEJIT_OK) fail_msg("%s: %s", res[i].name, res[i].error);
    assert_int_equal(st, MOEJIT_OK);
    mj_cache *c;
    assert_int_equal(mj_cache_open(dir, MOEJIT_CACHE_RO, &c), MOEJIT_OK);
    for (int i = 0; i < s->n; i++) {
        assert_int_equal(res[i].outcome, MOEJIT_PREWARM_COMPILED);
        mj_cache_blob blob;
        if (mj_cache_load(c, res[i].key, NULL, 0, &blob) != MOEJIT_OK)
            fail_msg("%s: entry %s: %s", res[i].name, res[i].key, moejit_last_error(NULL));
        mjt_check_cubin(blob.view.cubin, blob.view.cubin_len, sm, res[i].name);
        mj_kernel_id id;
        mj_kernel_plan plan;
        assert_int_equal(mj_kernel_id_from_desc(&s->descs[i], &id), MOEJIT_OK);
        mj_plan(&id, &plan);
        for (int e = 0; e < plan.n_entries; e++) {
            if (!cubin_has_symbol(blob.view.cubin, blob.view.cubin_len, plan.entry[e].name))
                fail_msg("%s: entry %s is not in the cubin", res[i].name, plan.entry[e].name);
            if (plan.entry[e].smem_bytes > 227 * 1024)
                fail_msg("%s: %s needs %d bytes of shared memory", res[i].name, plan.entry[e].name,
                         plan.entry[e].smem_bytes);
        }
        mj_cache_blob_free(&blob);
    }
    mj_cache_close(c);
    return res;
}

static moejit_prewarm_result *prewarm_and_verify(moejit_ctx *ctx, const char *dir, const sweep *s)
{
    return prewarm_and_verify_for(ctx, dir, s, "sm_90a", 90);
}

static void test_sweep_compiles(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    sweep s = route_sweep();
    assert_int_equal(s.n, 420);
    moejit_prewarm_result *res = prewarm_and_verify(ctx, dir, &s);
    moejit_stats stats;
    moejit_ctx_stats(ctx, &stats);
    assert_int_equal(stats.compiles, s.n);
    assert_int_equal(stats.disk_writes, s.n);

    /* A second prewarm compiles nothing. */
    assert_int_equal(moejit_prewarm(ctx, s.descs, (size_t)s.n, "sm_90a", res), MOEJIT_OK);
    for (int i = 0; i < s.n; i++) assert_int_equal(res[i].outcome, MOEJIT_PREWARM_CACHED);
    moejit_ctx_stats(ctx, &stats);
    assert_int_equal(stats.compiles, s.n);
    free(res);
    free(s.descs);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* Other archs compile too, and land under other keys. */
static void test_other_archs(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE};
    d.route.num_experts = 160, d.route.topk = 6, d.route.dtype = MOEJIT_DTYPE_BF16;
    moejit_prewarm_result r90, r80, r100, r120;
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_90a", &r90), MOEJIT_OK);
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_80", &r80), MOEJIT_OK);
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_100a", &r100), MOEJIT_OK);
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "sm_120a", &r120), MOEJIT_OK);
    assert_string_not_equal(r90.key, r80.key);
    assert_string_not_equal(r90.key, r100.key);
    assert_string_not_equal(r100.key, r120.key);
    /* A malformed arch is refused before anything runs. */
    moejit_prewarm_result bad;
    assert_int_equal(moejit_prewarm(ctx, &d, 1, "hopper", &bad), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(bad.error, "arch = \"hopper\""));
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* Blackwell (sm_100a) and consumer Blackwell (sm_120a) also get every preset, in f32 and bf16, and
 * route's serving options (test_every_op_every_arch has one kernel of each op): no Hopper-only
 * instruction without a fallback (they cannot be run here, only compiled). */
static void test_presets_compile_for_blackwell(void **state)
{
    (void)state;
    moejit_kernel_desc descs[32];
    int n = 0;
    for (size_t p = 0; moejit_route_preset_name(p); p++)
        for (int dt = 0; dt < 2; dt++) {
            descs[n] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE};
            assert_int_equal(moejit_route_preset(moejit_route_preset_name(p), &descs[n].route), MOEJIT_OK);
            descs[n++].route.dtype = dt ? MOEJIT_DTYPE_BF16 : MOEJIT_DTYPE_F32;
        }
    moejit_route_spec serving = descs[8].route; /* deepseek-v3 or whichever preset sits there */
    serving.padded = 1, serving.max_replicas = 4, serving.num_physical_experts = serving.num_experts + 32;
    serving.load_counter = MOEJIT_LOAD_INT64, serving.replay = MOEJIT_REPLAY_RECORD, serving.id_dtype = MOEJIT_INDEX_INT64;
    descs[n++] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE, .route = serving};
    descs[n++] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE_ALIGN, .route_align = {.route = serving, .block_size = 16}};
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    static const char *const archs[] = {"sm_100a", "sm_120a"};
    moejit_prewarm_result *r = calloc((size_t)n * 2, sizeof *r);
    assert_non_null(r);
    const moejit_status st = moejit_prewarm_archs(ctx, descs, (size_t)n, archs, 2, r, NULL, NULL);
    for (int i = 0; i < 2 * n; i++)
        if (r[i].status != MOEJIT_OK) fail_msg("%s for %s: %s", r[i].name, r[i].arch, r[i].error);
    assert_int_equal(st, MOEJIT_OK);
    printf("[ info     ] %d kernels compiled for sm_100a and sm_120a\n", n);
    free(r);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* Every preset and the issue-4 edge sweep compile, with the real options. */
static void test_edge_sweep_and_presets_compile(void **state)
{
    (void)state;
    moejit_route_spec specs[400];
    sweep s = {calloc(400 + 16, sizeof(moejit_kernel_desc)), mjt_route_edge_sweep(specs, 400)};
    assert_non_null(s.descs);
    for (int i = 0; i < s.n; i++) s.descs[i] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE, .route = specs[i]};
    int presets = 0;
    for (const char *name; (name = moejit_route_preset_name((size_t)presets)); presets++) {
        s.descs[s.n].op = MOEJIT_OP_ROUTE;
        assert_int_equal(moejit_route_preset(name, &s.descs[s.n].route), MOEJIT_OK);
        s.n++;
    }
    assert_int_equal(presets, 8);
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    free(prewarm_and_verify(ctx, dir, &s));
    printf("[ info     ] %d kernels compiled\n", s.n);
    free(s.descs);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* route_backward on every path (several tokens a warp, a warp, a block a token) and score, with
 * the options that change its code. */
static const moejit_route_spec k_backward_shapes[] = {
    {.num_experts = 1, .topk = 1, .shared_slots = 64, .routed_scaling_factor = 2.0f},
    {.num_experts = 3, .topk = 2, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .renormalize = 1, .dtype = MOEJIT_DTYPE_BF16},
    {.num_experts = 16, .topk = 4, .score = MOEJIT_SCORE_SIGMOID, .softcap = 5.0f, .renormalize = 1, .scale_output = 1,
     .routed_scaling_factor = 2.5f, .shared_slots = 2, .dtype = MOEJIT_DTYPE_F16},
    {.num_experts = 60, .topk = 60, .score_after_topk = 1, .renormalize = 1},
    {.num_experts = 128, .topk = 8, .renormalize = 1, .dtype = MOEJIT_DTYPE_BF16},
    {.num_experts = 128, .topk = 4, .score_after_topk = 1},
    {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .renormalize = 1, .scale_output = 1,
     .routed_scaling_factor = 2.5f, .dtype = MOEJIT_DTYPE_BF16},
    {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .softcap = 30.0f, .id_dtype = MOEJIT_INDEX_INT64},
    {.num_experts = 1000, .topk = 40, .score = MOEJIT_SCORE_SQRT_SOFTPLUS, .shared_slots = 3, .routed_scaling_factor = 2.0f},
    {.num_experts = 1024, .topk = 64, .softcap = 2.0f, .shared_slots = 64, .scale_output = 1,
     .routed_scaling_factor = 2.5f, .dtype = MOEJIT_DTYPE_F16},
    {.num_experts = 1025, .topk = 33, .score = MOEJIT_SCORE_SIGMOID, .renormalize = 1, .shared_slots = 2,
     .routed_scaling_factor = 2.5f, .id_dtype = MOEJIT_INDEX_INT16},
    {.num_experts = 2048, .topk = 8, .score_after_topk = 1, .dtype = MOEJIT_DTYPE_BF16},
    {.num_experts = 4096, .topk = 64, .softcap = 50.0f, .renormalize = 1, .scale_output = 1,
     .routed_scaling_factor = 2.5f, .shared_slots = 64, .dtype = MOEJIT_DTYPE_F16},
};
#define BACKWARD_SHAPES (sizeof k_backward_shapes / sizeof k_backward_shapes[0])

/* capacity: both policies, every id dtype, one expert to 4096, K up to 64 with shared slots. */
static const moejit_capacity_spec k_capacity_shapes[] = {
    {.num_experts = 64, .topk = 8},
    {.num_experts = 64, .topk = 8, .policy = MOEJIT_DROP_POSITION},
    {.num_experts = 256, .topk = 8, .shared_slots = 1, .id_dtype = MOEJIT_INDEX_INT64},
    {.num_experts = 128, .topk = 2, .id_dtype = MOEJIT_INDEX_INT16, .policy = MOEJIT_DROP_POSITION},
    {.num_experts = 4096, .topk = 64, .shared_slots = 64, .id_dtype = MOEJIT_INDEX_INT64},
    {.num_experts = 1, .topk = 1, .policy = MOEJIT_DROP_POSITION},
};
#define CAPACITY_SHAPES (sizeof k_capacity_shapes / sizeof k_capacity_shapes[0])

/* align (with every id dtype and a map on a few shapes, the small path's E and beyond it),
 * route_align (the GPU suite's shapes), mx_scales, route_backward and capacity. */
static sweep ops_sweep(void)
{
    static const int es[] = {1, 3, 64, 128, 256, 384, 1000, 4096};
    static const int bs[] = {1, 4, 8, 16, 64, 256, 1024};
    static const int cs[] = {1, 7, 20, 64, 160, 224, 225, 576};
    static const moejit_align_spec ids[] = {
        {.num_experts = 256, .block_size = 64, .id_dtype = MOEJIT_INDEX_INT64},
        {.num_experts = 256, .block_size = 64, .id_dtype = MOEJIT_INDEX_INT16},
        {.num_experts = 256, .block_size = 64, .global_experts = 1024},
        {.num_experts = 4096, .block_size = 16, .id_dtype = MOEJIT_INDEX_INT64, .global_experts = 16384},
        {.num_experts = 1000, .block_size = 1, .id_dtype = MOEJIT_INDEX_INT16, .global_experts = 5},
    };
    const int n_ids = (int)(sizeof ids / sizeof ids[0]);
    sweep s = {calloc(8 * 7 + (size_t)n_ids + 8 + mjt_route_align_shape_count + BACKWARD_SHAPES + CAPACITY_SHAPES,
                      sizeof(moejit_kernel_desc)),
               0};
    assert_non_null(s.descs);
    for (int e = 0; e < 8; e++)
        for (int b = 0; b < 7; b++) {
            moejit_kernel_desc *x = &s.descs[s.n++];
            x->op = MOEJIT_OP_ALIGN;
            x->align = (moejit_align_spec){.num_experts = es[e], .block_size = bs[b]};
        }
    for (int i = 0; i < n_ids; i++) {
        moejit_kernel_desc *x = &s.descs[s.n++];
        x->op = MOEJIT_OP_ALIGN;
        x->align = ids[i];
    }
    for (int c = 0; c < 8; c++) {
        moejit_kernel_desc *x = &s.descs[s.n++];
        x->op = MOEJIT_OP_MX_SCALES;
        x->mx_scales.cols = cs[c];
    }
    for (size_t i = 0; i < mjt_route_align_shape_count; i++) {
        moejit_kernel_desc *x = &s.descs[s.n++];
        x->op = MOEJIT_OP_ROUTE_ALIGN;
        x->route_align = mjt_route_align_shapes[i];
    }
    for (size_t i = 0; i < BACKWARD_SHAPES; i++) {
        moejit_kernel_desc *x = &s.descs[s.n++];
        x->op = MOEJIT_OP_ROUTE_BACKWARD;
        x->route_backward.route = k_backward_shapes[i];
    }
    for (size_t i = 0; i < CAPACITY_SHAPES; i++) {
        moejit_kernel_desc *x = &s.descs[s.n++];
        x->op = MOEJIT_OP_CAPACITY;
        x->capacity = k_capacity_shapes[i];
    }
    return s;
}

static void test_ops_sweep_compiles(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    sweep s = ops_sweep();
    free(prewarm_and_verify(ctx, dir, &s));
    free(s.descs);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* The auxiliary losses: route and route_backward with each aux statistic and all three (E from
 * the several-tokens-a-warp path to a block a token; softmax and sigmoid, f32 and bf16, int32 and
 * int64 sequence offsets), and route_losses for each set. */
static sweep aux_sweep(void)
{
    static const int es[] = {8, 256, 384, 4096};
    static const int ks[] = {2, 8, 8, 16};
    static const uint32_t sets[] = {MOEJIT_AUX_LOAD_BALANCE, MOEJIT_AUX_SEQ_LOAD_BALANCE, MOEJIT_AUX_Z_LOSS,
                                    MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE | MOEJIT_AUX_Z_LOSS};
    static const moejit_score scs[] = {MOEJIT_SCORE_SOFTMAX, MOEJIT_SCORE_SIGMOID};
    sweep s = {calloc(4 * 4 * 2 * 2 + 4 * 5 + 2, sizeof(moejit_kernel_desc)), 0};
    assert_non_null(s.descs);
    for (int e = 0; e < 4; e++)
        for (int f = 0; f < 4; f++)
            for (int c = 0; c < 2; c++) {
                const moejit_route_spec r = {
                    .num_experts = es[e], .topk = ks[e], .score = scs[c], .renormalize = c,
                    .dtype = (e + f) % 2 ? MOEJIT_DTYPE_BF16 : MOEJIT_DTYPE_F32, .aux_stats = sets[f],
                    .seq_offset_dtype = (e + c) % 2 ? MOEJIT_INDEX_INT64 : MOEJIT_INDEX_INT32};
                s.descs[s.n++] = (moejit_kernel_desc){.op = MOEJIT_OP_ROUTE, .route = r};
                s.descs[s.n].op = MOEJIT_OP_ROUTE_BACKWARD;
                s.descs[s.n++].route_backward.route = r;
            }
    /* the aux score beside route's own: softmax chosen on raw logits, a soft cap, grouped sigmoid
     * with a bias and shared slots */
    s.descs[s.n++] = (moejit_kernel_desc){
        .op = MOEJIT_OP_ROUTE,
        .route = {.num_experts = 128, .topk = 8, .score_after_topk = 1, .softcap = 30.0f, .aux_stats = 7}};
    s.descs[s.n++] = (moejit_kernel_desc){
        .op = MOEJIT_OP_ROUTE,
        .route = {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID, .num_groups = 8, .topk_groups = 4,
                  .group_score = MOEJIT_GROUP_SCORE_TOP2_SUM, .has_bias = 1, .renormalize = 1, .shared_slots = 1,
                  .dtype = MOEJIT_DTYPE_BF16, .aux_stats = 7}};
    for (int e = 0; e < 4; e++)
        for (int f = 0; f < 5; f++)
            s.descs[s.n++] = (moejit_kernel_desc){
                .op = MOEJIT_OP_ROUTE_LOSSES,
                .route_losses = {.num_experts = es[e], .topk = ks[e], .aux_stats = f < 4 ? sets[f] : sets[1],
                                 .seq_offset_dtype = f < 4 ? MOEJIT_INDEX_INT32 : MOEJIT_INDEX_INT64}};
    return s;
}

static void test_aux_sweep_compiles(void **state)
{
    (void)state;
    char dir[4096];
    moejit_ctx *ctx = mjt_open_tmp(dir);
    sweep s = aux_sweep();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    free(prewarm_and_verify(ctx, dir, &s));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("[ info     ] %d kernels compiled in %.1f s\n", s.n,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    free(s.descs);
    moejit_close(ctx);
    mjt_rmtree(dir);
}

/* One shape of every op compiles for every arch family the library targets, each to a cubin of
 * its SM with every entry point: the entries' griddepcontrol prologue (programmatic dependent
 * launch, kernel_templates/common.cuh) is behind its sm_90 guard, so sm_80 compiles too. */
static void test_every_op_every_arch(void **state)
{
    (void)state;
    static const struct {
        const char *arch;
        int sm;
    } archs[] = {{"sm_80", 80}, {"sm_90a", 90}, {"sm_100a", 100}, {"sm_120a", 120}};
    moejit_kernel_desc descs[] = {
        {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID,
                                          .dtype = MOEJIT_DTYPE_BF16, .has_bias = 1, .renormalize = 1}},
        {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 2048, .topk = 4}},
        {.op = MOEJIT_OP_ALIGN, .align = {.num_experts = 128, .block_size = 64}},
        {.op = MOEJIT_OP_ROUTE_ALIGN, .route_align = mjt_route_align_shapes[0]},
        {.op = MOEJIT_OP_MX_SCALES, .mx_scales = {.cols = 160}},
        {.op = MOEJIT_OP_PERMUTE, .permute = {.hidden = 2048, .dtype = MOEJIT_DTYPE_BF16, .has_scale = 1}},
        {.op = MOEJIT_OP_COMBINE, .combine = {.hidden = 2048, .dtype = MOEJIT_DTYPE_BF16}},
        {.op = MOEJIT_OP_CAPACITY, .capacity = {.num_experts = 64, .topk = 8, .shared_slots = 1}},
        {.op = MOEJIT_OP_ROUTE, .route = {.num_experts = 384, .topk = 8, .score = MOEJIT_SCORE_SIGMOID,
                                          .dtype = MOEJIT_DTYPE_BF16, .aux_stats = 7}},
        {.op = MOEJIT_OP_ROUTE_LOSSES, .route_losses = {.num_experts = 384, .topk = 8, .aux_stats = 7}},
    };
    const sweep s = {descs, (int)(sizeof descs / sizeof descs[0])};
    for (size_t a = 0; a < sizeof archs / sizeof archs[0]; a++) {
        char dir[4096];
        moejit_ctx *ctx = mjt_open_tmp(dir);
        free(prewarm_and_verify_for(ctx, dir, &s, archs[a].arch, archs[a].sm));
        moejit_close(ctx);
        mjt_rmtree(dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_source_is_specialised),
        cmocka_unit_test(test_sweep_compiles),
        cmocka_unit_test(test_other_archs),
        cmocka_unit_test(test_every_op_every_arch),
        cmocka_unit_test(test_presets_compile_for_blackwell),
        cmocka_unit_test(test_edge_sweep_and_presets_compile),
        cmocka_unit_test(test_ops_sweep_compiles),
        cmocka_unit_test(test_aux_sweep_compiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
