/* route_probe — per-launch GPU time of route kernels in CUDA graphs, beside an empty kernel
 * launched the same way. Inputs rotate through 8 buffers (large batches come from DRAM).
 *
 *   route_probe --model deepseek-v3 [--dtype f32|bf16] [--tokens 1,128,16384]
 *   route_probe --experts 512 --topk 8 --score sigmoid [--bias] [--renormalize] …
 *   route_probe --serving --model kimi-k2 …   the serving options' cost (moejit.h route steps 8-12)
 *   route_probe … --no-pdl | --pdl-both       programmatic dependent launch off, or both ways
 *   route_probe --backward [--model qwen3-moe] [--dtype f32|bf16] [--tokens 1,1024,16384]
 *                                             route_backward (without a model: deepseek-v3, kimi-k2
 *                                             and qwen3-moe), the forward beside it
 *   route_probe --losses [--model qwen3-moe] [--dtype f32|bf16] [--tokens 1,1024,16384]
 *                                             the auxiliary losses (moejit.h route step 13,
 *                                             route_losses, route_backward's loss gradient); models
 *                                             as --backward
 *
 * Prints whether programmatic dependent launch (PDL: moejit_config.pdl, MOEJIT_PDL) is on, then one
 * line per T: kernel, T, µs per launch, multiple of the empty-kernel floor, GB/s moved; with
 * --serving one line per T and option: µs per launch and its cost over plain route (each variant
 * timed twice, interleaved, the lower kept). --pdl-both times every line with PDL on and off
 * (two contexts, interleaved forth and back, the lower of two kept each). Two floors: the empty
 * kernel launched plainly, and launched with the PDL attribute running the generated kernels'
 * prologue (mj::pdl_begin) — the floor a PDL launch of route is compared with. --backward: per T
 * the forward's line, then route_backward's, whose GB/s counts the bytes it must move: the logits
 * once (whole rows for a softmax over the row; the K chosen of each row for the other scores,
 * which need no more), the ids and grad_weights once, grad_logits [T, E] f32 written once.
 * --losses: per T, µs per launch of route plain, with the load-balance statistics, with all three
 * (lb, seq over sequences of 4096 tokens, z), route_losses (all three), route_backward plain and
 * with the losses' gradient, and each one's cost over plain route (the gradient's also over plain
 * route_backward); every line timed twice, interleaved forth and back, the lower kept. The
 * statistics are zeroed before each line's timing, outside the graph; the graph's replays then add
 * to them (the values are not read back; the adds cost the same whatever they hold). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit/driver.h"
#include "moejit.h"
#include "common/numeric.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"

#include "bench_common.h"
#include "bench_floor.h"

enum { ROTATE = 8, INNER = 20, REPLAYS = 50 };

static const mj_driver *d;
static CUstream stream;

/* Median per-launch time of `launch(i)` captured INNER times in one graph. */
static float graph_us(void (*launch)(int, void *), void *user)
{
    for (int i = 0; i < ROTATE; i++) launch(i, user); /* warm up (and compile) outside the graph */
    CU(d->stream_synchronize(stream));
    CUgraph g;
    CUgraphExec ge;
    CU(d->stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
    for (int i = 0; i < INNER; i++) launch(i % ROTATE, user);
    CU(d->stream_end_capture(stream, &g));
    CU(d->graph_instantiate(&ge, g, 0));
    CUevent a, b;
    CU(d->event_create(&a, 0));
    CU(d->event_create(&b, 0));
    double t[REPLAYS];
    CU(d->graph_launch(ge, stream));
    for (int r = 0; r < REPLAYS; r++) {
        CU(d->event_record(a, stream));
        CU(d->graph_launch(ge, stream));
        CU(d->event_record(b, stream));
        CU(d->event_synchronize(b));
        float ms;
        CU(d->event_elapsed_time(&ms, a, b));
        t[r] = ms * 1000.0 / INNER;
    }
    d->graph_exec_destroy(ge);
    d->graph_destroy(g);
    d->event_destroy(a);
    d->event_destroy(b);
    return (float)bench_median(t, REPLAYS);
}

static CUfunction g_empty, g_empty_pdl;
static int g_pdl_capable; /* the device and driver take PDL launches (mj_driver_pdl) */
static void launch_empty(int i, void *user)
{
    (void)i, (void)user;
    CU(d->launch_kernel(g_empty, 1, 1, 1, 32, 1, 1, 0, stream, NULL, NULL));
}

/* The same launch with the attribute moejit's PDL launches carry (jit/launch.c), of an empty
 * kernel that runs the generated entry points' prologue. */
static void launch_empty_pdl(int i, void *user)
{
    (void)i, (void)user;
    CUlaunchAttribute attr = {.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION};
    attr.value.programmaticStreamSerializationAllowed = 1;
    const CUlaunchConfig cfg = {.gridDimX = 1, .gridDimY = 1, .gridDimZ = 1, .blockDimX = 32, .blockDimY = 1,
                                .blockDimZ = 1, .hStream = stream, .attrs = &attr, .numAttrs = 1};
    CU(d->launch_kernel_ex(&cfg, g_empty_pdl, NULL, NULL));
}

/* Two empty kernels, compiled with the library's own NVRTC wrapper, for the floors: one bare, one
 * with the generated entry points' prologue (kernel_templates/common.cuh's mj::pdl_begin). */
static void load_empty_kernel(void)
{
    const int cc = bench_empty_kernels(d, &g_empty, &g_empty_pdl);
    g_pdl_capable = mj_driver_pdl(d, cc);
}

typedef struct route_run {
    moejit_ctx *ctx;
    moejit_route_spec spec;
    moejit_route_args args[ROTATE];
    int serving; /* --serving */
} route_run;

/* PDL modes: the environment (MOEJIT_PDL, default on), --no-pdl, --pdl-both. */
enum { PDL_ENV, PDL_OFF, PDL_BOTH };

/* A launch inside a timed graph cannot fail quietly: print the library's message and stop. */
static void launched(moejit_status st, const char *what, const moejit_ctx *ctx)
{
    if (st == MOEJIT_OK) return;
    fprintf(stderr, "%s: %s: %s\n", what, moejit_status_str(st), moejit_last_error(ctx));
    exit(1);
}

static void launch_route(int i, void *user)
{
    route_run *r = user;
    launched(moejit_route(r->ctx, &r->spec, &r->args[i], (moejit_stream)stream), "moejit_route",
             r->ctx);
}

static int parse_args(int argc, char **argv, moejit_route_spec *s, char *tokens, size_t cap, int *serving,
                      int *pdl_mode, int *backward, int *losses, const char **model_out)
{
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--model")) model = v, i++;
        else if (!strcmp(a, "--experts")) s->num_experts = atoi(v), i++;
        else if (!strcmp(a, "--topk")) s->topk = atoi(v), i++;
        else if (!strcmp(a, "--score")) s->score = (moejit_score)mj_score_parse(v), i++;
        else if (!strcmp(a, "--groups")) s->num_groups = atoi(v), i++;
        else if (!strcmp(a, "--topk-groups")) s->topk_groups = atoi(v), i++;
        else if (!strcmp(a, "--top2-sum")) s->group_score = MOEJIT_GROUP_SCORE_TOP2_SUM;
        else if (!strcmp(a, "--bias")) s->has_bias = 1;
        else if (!strcmp(a, "--renormalize")) s->renormalize = 1;
        else if (!strcmp(a, "--tokens")) snprintf(tokens, cap, "%s", v), i++;
        else if (!strcmp(a, "--dtype")) s->dtype = (moejit_dtype)mj_dtype_parse(v), i++;
        else if (!strcmp(a, "--serving")) *serving = 1;
        else if (!strcmp(a, "--no-pdl")) *pdl_mode = PDL_OFF;
        else if (!strcmp(a, "--pdl-both")) *pdl_mode = PDL_BOTH;
        else if (!strcmp(a, "--backward")) *backward = 1;
        else if (!strcmp(a, "--losses")) *losses = 1;
        else {
            fprintf(stderr, "route_probe: unknown argument %s\n", a);
            return -1;
        }
    }
    if (model) {
        moejit_dtype dt = s->dtype;
        if (moejit_route_preset(model, s) != MOEJIT_OK) {
            fprintf(stderr, "%s\n", moejit_last_error(NULL));
            return -1;
        }
        s->dtype = dt;
    }
    *model_out = model;
    return 0;
}

/* ---- --serving: each option of route steps 8-12 over plain route, on the same inputs ---- */

enum { N_VARIANTS = 8, SERVE_REPLICAS = 4, SERVE_EXTRA = 32 };
static const char *const k_variant_names[N_VARIANTS] = {
    "plain",          "padded (count = T)",   "placement (R=4, P=E+32)", "load counters (int32)",
    "replay: record", "replay: given",        "int64 ids",               "padded+placement+record+load",
};

static moejit_route_spec variant_spec(const moejit_route_spec *base, int v)
{
    moejit_route_spec s = *base;
    const int placed = v == 2 || v == 7, P = s.num_experts + SERVE_EXTRA;
    if (v == 1 || v == 7) s.padded = 1;
    if (placed) s.max_replicas = SERVE_REPLICAS, s.num_physical_experts = P;
    if (v == 3 || v == 7) s.load_counter = MOEJIT_LOAD_INT32;
    if (v == 4 || v == 7) s.replay = MOEJIT_REPLAY_RECORD;
    if (v == 5) s.replay = MOEJIT_REPLAY_GIVEN;
    if (v == 6) s.id_dtype = MOEJIT_INDEX_INT64;
    return s;
}

/* The option buffers beside run->args (already holding logits, ids (room for int64), weights). */
static void serving_buffers(route_run *run, long T, CUdeviceptr *extra, int *n_extra)
{
    const int E = run->spec.num_experts, W = run->spec.topk + run->spec.shared_slots, P = E + SERVE_EXTRA;
    int32_t *map = malloc(sizeof(int32_t) * (size_t)E * SERVE_REPLICAS), *rc = malloc(sizeof(int32_t) * (size_t)E);
    for (int e = 0; e < E; e++) rc[e] = 1 + e % SERVE_REPLICAS;
    for (int i = 0; i < E * SERVE_REPLICAS; i++) map[i] = (int32_t)((i * 7919) % P);
    const int32_t count = (int32_t)T;
    CUdeviceptr d_count, d_map, d_rc, d_load;
    CU(d->mem_alloc(&d_count, 4));
    CU(d->memcpy_htod(d_count, &count, 4));
    CU(d->mem_alloc(&d_map, sizeof(int32_t) * (size_t)E * SERVE_REPLICAS));
    CU(d->memcpy_htod(d_map, map, sizeof(int32_t) * (size_t)E * SERVE_REPLICAS));
    CU(d->mem_alloc(&d_rc, sizeof(int32_t) * (size_t)E));
    CU(d->memcpy_htod(d_rc, rc, sizeof(int32_t) * (size_t)E));
    CU(d->mem_alloc(&d_load, sizeof(int64_t) * (size_t)P));
    CU(d->memset_d8(d_load, 0, sizeof(int64_t) * (size_t)P));
    *n_extra = 0;
    extra[(*n_extra)++] = d_count, extra[(*n_extra)++] = d_map, extra[(*n_extra)++] = d_rc, extra[(*n_extra)++] = d_load;
    for (int r = 0; r < ROTATE; r++) {
        CUdeviceptr logical;
        CU(d->mem_alloc(&logical, sizeof(int32_t) * (size_t)T * (size_t)W));
        extra[(*n_extra)++] = logical;
        moejit_route_args *a = &run->args[r];
        a->num_valid = (const int32_t *)d_count;
        a->logical_to_physical = (const int32_t *)d_map;
        a->replica_count = (const int32_t *)d_rc;
        a->expert_load = (void *)d_load;
        a->logical_ids = (void *)logical;
    }
    free(map), free(rc);
}

static void serving_table(route_run *run, const char *name, long T, float floor, const char *label)
{
    const moejit_route_spec base = run->spec;
    CUdeviceptr extra[4 + ROTATE];
    int n_extra;
    serving_buffers(run, T, extra, &n_extra);
    run->spec = variant_spec(&base, 4); /* the given ids of variant 5: what record writes */
    for (int r = 0; r < ROTATE; r++) launch_route(r, run);
    float us[N_VARIANTS];
    for (int v = 0; v < N_VARIANTS; v++) us[v] = 1e30f;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N_VARIANTS; i++) {
            const int v = pass ? N_VARIANTS - 1 - i : i; /* forth, then back: drift cancels */
            run->spec = variant_spec(&base, v);
            const float t = graph_us(launch_route, run);
            if (t < us[v]) us[v] = t;
        }
    run->spec = base;
    printf("%s (%s) T=%ld%s\n", name, mj_dtype_name(base.dtype), T, label);
    for (int v = 0; v < N_VARIANTS; v++)
        printf("  %-30s %8.2f us  %+6.2f us  %+6.1f%%  %5.2fx floor\n", k_variant_names[v], us[v], us[v] - us[0],
               100.0 * (us[v] - us[0]) / us[0], us[v] / floor);
    for (int i = 0; i < n_extra; i++) d->mem_free(extra[i]);
}

/* ---- --backward: route_backward on the ids of route, beside route ---- */

typedef struct backward_run {
    moejit_ctx *ctx;
    moejit_route_backward_spec spec;
    moejit_route_backward_args args[ROTATE];
} backward_run;

static void launch_backward(int i, void *user)
{
    backward_run *b = user;
    launched(moejit_route_backward(b->ctx, &b->spec, &b->args[i], (moejit_stream)stream), "moejit_route_backward",
             b->ctx);
}

/* One model (or spec) at each T: route's time, then route_backward's on route's ids. */
static void backward_table(moejit_ctx *ctx, const moejit_route_spec *spec, const char *tokens_list, float floor)
{
    route_run run = {.ctx = ctx, .spec = *spec};
    backward_run bw = {.ctx = ctx, .spec = {.route = *spec}};
    moejit_kernel_desc fd = {.op = MOEJIT_OP_ROUTE, .route = *spec}, bd = {.op = MOEJIT_OP_ROUTE_BACKWARD};
    bd.route_backward = bw.spec;
    char fname[96], bname[96], tokens[256];
    CHECK(moejit_kernel_name(&fd, fname, sizeof fname));
    CHECK(moejit_kernel_name(&bd, bname, sizeof bname));
    snprintf(tokens, sizeof tokens, "%s", tokens_list);
    const int E = spec->num_experts, K = spec->topk, W = K + spec->shared_slots;
    const size_t elem = spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    const int row_softmax = spec->score == MOEJIT_SCORE_SOFTMAX && !spec->score_after_topk;
    CUdeviceptr bias = 0;
    if (spec->has_bias) {
        float *hb = malloc(sizeof(float) * (size_t)E);
        for (int e = 0; e < E; e++) hb[e] = 0.2f * ((float)rand() / (float)RAND_MAX - 0.5f);
        CU(d->mem_alloc(&bias, sizeof(float) * (size_t)E));
        CU(d->memcpy_htod(bias, hb, sizeof(float) * (size_t)E));
        free(hb);
    }
    for (char *save = NULL, *tok = strtok_r(tokens, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const long T = atol(tok);
        const size_t in_bytes = (size_t)T * (size_t)E * elem, slots = (size_t)T * (size_t)W;
        unsigned char *host = malloc(in_bytes);
        float *hg = malloc(slots * 4);
        CUdeviceptr in[ROTATE], ids[ROTATE], w[ROTATE], gw[ROTATE], grad[ROTATE];
        for (int r = 0; r < ROTATE; r++) {
            for (size_t i = 0; i < (size_t)T * (size_t)E; i++) {
                const float v = 4.0f * ((float)rand() / (float)RAND_MAX) - 2.0f;
                if (elem == 4) ((float *)host)[i] = v;
                else ((uint16_t *)host)[i] = spec->dtype == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
            }
            for (size_t i = 0; i < slots; i++) hg[i] = 2.0f * ((float)rand() / (float)RAND_MAX) - 1.0f;
            CU(d->mem_alloc(&in[r], in_bytes));
            CU(d->mem_alloc(&ids[r], slots * 8));
            CU(d->mem_alloc(&w[r], slots * 4));
            CU(d->mem_alloc(&gw[r], slots * 4));
            CU(d->mem_alloc(&grad[r], (size_t)T * (size_t)E * 4));
            CU(d->memcpy_htod(in[r], host, in_bytes));
            CU(d->memcpy_htod(gw[r], hg, slots * 4));
            run.args[r] = (moejit_route_args){.logits = (void *)in[r], .bias = (float *)bias, .ids = (void *)ids[r],
                                                .weights = (float *)w[r], .num_tokens = T};
            bw.args[r] = (moejit_route_backward_args){.logits = (void *)in[r], .ids = (void *)ids[r],
                                                      .grad_weights = (float *)gw[r], .grad_logits = (float *)grad[r],
                                                      .num_tokens = T};
            launch_route(r, &run); /* the ids the backward reads */
        }
        const float fwd = graph_us(launch_route, &run), bwd = graph_us(launch_backward, &bw);
        const size_t id_bytes = spec->id_dtype == MOEJIT_INDEX_INT64 ? 8 : spec->id_dtype == MOEJIT_INDEX_INT16 ? 2 : 4;
        const double fwd_moved = (double)in_bytes + (double)slots * (4 + (double)id_bytes);
        const double bwd_moved = (row_softmax ? (double)in_bytes : (double)T * K * elem) +
                                 (double)slots * (4 + (double)id_bytes) + (double)T * E * 4;
        printf("%-58s %-5s T=%-6ld %8.2f us  %5.2fx floor  %7.0f GB/s\n", fname, mj_dtype_name(spec->dtype), T, fwd,
               fwd / floor, fwd_moved / (fwd * 1e-6) / 1e9);
        printf("%-58s %-5s T=%-6ld %8.2f us  %5.2fx floor  %7.0f GB/s  (%.1fx the forward)\n", bname,
               mj_dtype_name(spec->dtype), T, bwd, bwd / floor, bwd_moved / (bwd * 1e-6) / 1e9, bwd / fwd);
        fflush(stdout);
        for (int r = 0; r < ROTATE; r++)
            d->mem_free(in[r]), d->mem_free(ids[r]), d->mem_free(w[r]), d->mem_free(gw[r]), d->mem_free(grad[r]);
        free(host), free(hg);
    }
    if (bias) d->mem_free(bias);
}

/* ---- --losses: the auxiliary losses' statistics, the losses, their gradient ---- */

enum { N_LOSS_LINES = 6, LOSS_SEQ_LEN = 4096 };
static const char *const k_loss_lines[N_LOSS_LINES] = {
    "route",          "route + stats lb",     "route + stats lb,seq,z",
    "route_losses (lb,seq,z)", "route_backward", "route_backward + losses' gradient",
};
#define AUX_ALL (MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE | MOEJIT_AUX_Z_LOSS)

typedef struct losses_run {
    moejit_ctx *ctx;
    moejit_route_losses_spec spec;
    moejit_route_losses_args args[ROTATE];
} losses_run;

static void launch_losses(int i, void *user)
{
    losses_run *l = user;
    launched(moejit_route_losses(l->ctx, &l->spec, &l->args[i], (moejit_stream)stream), "moejit_route_losses",
             l->ctx);
}

/* One model (or spec) at each T: the six lines of --losses. */
static void losses_table(moejit_ctx *ctx, const moejit_route_spec *spec, const char *tokens_list, float floor)
{
    moejit_route_spec all = *spec;
    all.aux_stats = AUX_ALL;
    all.seq_offset_dtype = MOEJIT_INDEX_INT32;
    route_run run = {.ctx = ctx, .spec = *spec};
    backward_run bw = {.ctx = ctx, .spec = {.route = *spec}}, bwl = {.ctx = ctx, .spec = {.route = all}};
    losses_run ls = {.ctx = ctx, .spec = {.num_experts = spec->num_experts, .topk = spec->topk, .aux_stats = AUX_ALL}};
    moejit_kernel_desc fd = {.op = MOEJIT_OP_ROUTE, .route = all};
    char fname[128], tokens[256];
    CHECK(moejit_kernel_name(&fd, fname, sizeof fname));
    snprintf(tokens, sizeof tokens, "%s", tokens_list);
    const int E = spec->num_experts, W = spec->topk + spec->shared_slots;
    const size_t elem = spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    CUdeviceptr bias = 0, gl;
    if (spec->has_bias) {
        float *hb = malloc(sizeof(float) * (size_t)E);
        for (int e = 0; e < E; e++) hb[e] = 0.2f * ((float)rand() / (float)RAND_MAX - 0.5f);
        CU(d->mem_alloc(&bias, sizeof(float) * (size_t)E));
        CU(d->memcpy_htod(bias, hb, sizeof(float) * (size_t)E));
        free(hb);
    }
    const float hgl[3] = {1e-2f, 1e-3f, 1e-3f}; /* dL/d(aux, seq_aux, z): coefficients as Megatron's */
    CU(d->mem_alloc(&gl, sizeof hgl));
    CU(d->memcpy_htod(gl, hgl, sizeof hgl));
    for (char *save = NULL, *tok = strtok_r(tokens, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const long T = atol(tok);
        const long S = T > 0 ? (T + LOSS_SEQ_LEN - 1) / LOSS_SEQ_LEN : 1;
        const size_t in_bytes = (size_t)T * (size_t)E * elem, slots = (size_t)T * (size_t)W;
        const size_t stat_n = (size_t)S * (size_t)E, lse_bytes = (size_t)(T > 0 ? T : 1) * 4;
        unsigned char *host = malloc(in_bytes ? in_bytes : 1);
        float *hg = malloc(slots ? slots * 4 : 4);
        int32_t *hoff = malloc(sizeof(int32_t) * (size_t)(S + 1));
        for (long q = 0; q <= S; q++) hoff[q] = (int32_t)(q * LOSS_SEQ_LEN < T ? q * LOSS_SEQ_LEN : T);
        CUdeviceptr in[ROTATE], ids[ROTATE], w[ROTATE], gw[ROTATE], grad[ROTATE], sums[ROTATE], counts[ROTATE],
            lse[ROTATE], out[ROTATE], off;
        moejit_aux_stats aux[ROTATE];
        CU(d->mem_alloc(&off, sizeof(int32_t) * (size_t)(S + 1)));
        CU(d->memcpy_htod(off, hoff, sizeof(int32_t) * (size_t)(S + 1)));
        for (int r = 0; r < ROTATE; r++) {
            for (size_t i = 0; i < (size_t)T * (size_t)E; i++) {
                const float v = 4.0f * ((float)rand() / (float)RAND_MAX) - 2.0f;
                if (elem == 4) ((float *)host)[i] = v;
                else ((uint16_t *)host)[i] = spec->dtype == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
            }
            for (size_t i = 0; i < slots; i++) hg[i] = 2.0f * ((float)rand() / (float)RAND_MAX) - 1.0f;
            CU(d->mem_alloc(&in[r], in_bytes ? in_bytes : 1));
            CU(d->mem_alloc(&ids[r], slots ? slots * 8 : 8));
            CU(d->mem_alloc(&w[r], slots ? slots * 4 : 4));
            CU(d->mem_alloc(&gw[r], slots ? slots * 4 : 4));
            CU(d->mem_alloc(&grad[r], (size_t)(T > 0 ? T : 1) * (size_t)E * 4));
            CU(d->mem_alloc(&sums[r], stat_n * 8));
            CU(d->mem_alloc(&counts[r], stat_n * 4));
            CU(d->mem_alloc(&lse[r], lse_bytes));
            CU(d->mem_alloc(&out[r], 3 * 4));
            CU(d->memcpy_htod(in[r], host, in_bytes));
            CU(d->memcpy_htod(gw[r], hg, slots * 4));
            aux[r] = (moejit_aux_stats){.prob_sums = (uint64_t *)sums[r], .counts = (int32_t *)counts[r],
                                        .lse = (float *)lse[r], .seq_offsets = (const void *)off, .num_seqs = S};
            run.args[r] = (moejit_route_args){.logits = (void *)in[r], .bias = (float *)bias, .ids = (void *)ids[r],
                                                .weights = (float *)w[r], .num_tokens = T, .aux = &aux[r]};
            bw.args[r] = (moejit_route_backward_args){.logits = (void *)in[r], .ids = (void *)ids[r],
                                                      .grad_weights = (float *)gw[r], .grad_logits = (float *)grad[r],
                                                      .num_tokens = T};
            bwl.args[r] = bw.args[r];
            bwl.args[r].grad_losses = (const float *)gl;
            bwl.args[r].aux = &aux[r];
            ls.args[r] = (moejit_route_losses_args){.aux = &aux[r], .losses = (float *)out[r], .num_tokens = T};
        }
        float us[N_LOSS_LINES];
        for (int v = 0; v < N_LOSS_LINES; v++) us[v] = 1e30f;
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < N_LOSS_LINES; i++) {
                const int v = pass ? N_LOSS_LINES - 1 - i : i; /* forth, then back: drift cancels */
                for (int r = 0; r < ROTATE; r++) { /* untimed: fresh statistics (and route's ids) */
                    CU(d->memset_d8(sums[r], 0, stat_n * 8));
                    CU(d->memset_d8(counts[r], 0, stat_n * 4));
                }
                run.spec = all;
                for (int r = 0; r < ROTATE; r++) launch_route(r, &run); /* the ids, counts and lse read below */
                float t;
                switch (v) {
                case 0: run.spec = *spec, t = graph_us(launch_route, &run); break;
                case 1:
                    run.spec = all, run.spec.aux_stats = MOEJIT_AUX_LOAD_BALANCE, t = graph_us(launch_route, &run);
                    break;
                case 2: run.spec = all, t = graph_us(launch_route, &run); break;
                case 3: t = graph_us(launch_losses, &ls); break;
                case 4: t = graph_us(launch_backward, &bw); break;
                default: t = graph_us(launch_backward, &bwl); break;
                }
                if (t < us[v]) us[v] = t;
            }
        printf("%s (%s) T=%ld S=%ld\n", fname, mj_dtype_name(spec->dtype), T, S);
        for (int v = 0; v < N_LOSS_LINES; v++) {
            printf("  %-34s %8.2f us  %+7.2f us  %+7.1f%% of route  %6.2fx floor", k_loss_lines[v], us[v], us[v] - us[0],
                   100.0 * (us[v] - us[0]) / us[0], us[v] / floor);
            if (v == 5) printf("  %+7.1f%% of route_backward", 100.0 * (us[5] - us[4]) / us[4]);
            printf("\n");
        }
        printf("  %-34s %8.2f us  %+7.1f%% of route (lb,seq,z statistics and losses)\n", "route + stats + route_losses",
               us[2] + us[3], 100.0 * (us[2] + us[3] - us[0]) / us[0]);
        fflush(stdout);
        for (int r = 0; r < ROTATE; r++) {
            d->mem_free(in[r]), d->mem_free(ids[r]), d->mem_free(w[r]), d->mem_free(gw[r]), d->mem_free(grad[r]);
            d->mem_free(sums[r]), d->mem_free(counts[r]), d->mem_free(lse[r]), d->mem_free(out[r]);
        }
        d->mem_free(off);
        free(host), free(hg), free(hoff);
    }
    d->mem_free(gl);
    if (bias) d->mem_free(bias);
}

int main(int argc, char **argv)
{
    route_run run = {0};
    char tokens[256] = "";
    int pdl_mode = PDL_ENV, backward = 0, losses = 0;
    const char *model = NULL;
    if (parse_args(argc, argv, &run.spec, tokens, sizeof tokens, &run.serving, &pdl_mode, &backward, &losses, &model))
        return 2;
    if (!tokens[0])
        snprintf(tokens, sizeof tokens, "%s", backward || losses ? "1,1024,16384" : "1,16,128,1024,4096,16384");
    if (mj_driver_get(&d) != MOEJIT_OK) {
        fprintf(stderr, "route_probe: %s\n", moejit_last_error(NULL));
        return 1;
    }
    load_empty_kernel();
    CU(d->stream_create(&stream, 1 /* non-blocking */));
    /* One context, or two (PDL on, PDL off) timed side by side. */
    moejit_ctx *ctxs[2] = {NULL, NULL};
    const char *labels[2] = {"", ""};
    int n_ctx = 1, active[2] = {0, 0};
    if (pdl_mode == PDL_BOTH) {
        const moejit_config on = {.pdl = 1}, off = {.pdl = 2};
        CHECK(moejit_open(&on, &ctxs[0]));
        CHECK(moejit_open(&off, &ctxs[1]));
        labels[0] = "  [PDL on]", labels[1] = "  [PDL off]", n_ctx = 2;
    } else {
        const moejit_config cfg = {.pdl = pdl_mode == PDL_OFF ? 2 : 0};
        CHECK(moejit_open(&cfg, &ctxs[0]));
    }
    for (int c = 0; c < n_ctx; c++) {
        int requested;
        CHECK(moejit_ctx_pdl(ctxs[c], &requested, &active[c]));
        char arch[16];
        CHECK(moejit_ctx_device_arch(ctxs[c], arch, sizeof arch));
        printf("PDL (programmatic dependent launch)%s: %s, %s on %s with driver %d\n", labels[c],
               requested ? "requested" : "off", active[c] ? "used" : "not used", arch, d->version);
    }
    const float floor = graph_us(launch_empty, NULL);
    const float floor_pdl = g_pdl_capable ? graph_us(launch_empty_pdl, NULL) : 0.0f;
    srand(1);
    if (backward || losses) {
        static const char *const models[] = {"deepseek-v3", "kimi-k2", "qwen3-moe"};
        void (*table)(moejit_ctx *, const moejit_route_spec *, const char *, float) =
            losses ? losses_table : backward_table;
        if (model || run.spec.num_experts) {
            table(ctxs[0], &run.spec, tokens, floor);
        } else {
            for (int m = 0; m < 3; m++) {
                moejit_route_spec s;
                CHECK(moejit_route_preset(models[m], &s));
                s.dtype = run.spec.dtype;
                table(ctxs[0], &s, tokens, floor);
            }
        }
        printf("%-58s floor (empty kernel, same graph method): %.2f us\n", "", floor);
        moejit_close(ctxs[0]);
        return 0;
    }
    moejit_kernel_desc desc = {.op = MOEJIT_OP_ROUTE, .route = run.spec};
    char name[96];
    if (moejit_kernel_name(&desc, name, sizeof name) != MOEJIT_OK) {
        fprintf(stderr, "route_probe: %s\n", moejit_last_error(NULL));
        return 2;
    }
    const int E = run.spec.num_experts, W = run.spec.topk + run.spec.shared_slots;
    const size_t elem = run.spec.dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    CUdeviceptr bias = 0;
    if (run.spec.has_bias) {
        float *hb = malloc(sizeof(float) * (size_t)E);
        for (int e = 0; e < E; e++) hb[e] = 0.2f * ((float)rand() / (float)RAND_MAX - 0.5f);
        CU(d->mem_alloc(&bias, sizeof(float) * (size_t)E));
        CU(d->memcpy_htod(bias, hb, sizeof(float) * (size_t)E));
        free(hb);
    }
    for (char *save = NULL, *tok = strtok_r(tokens, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const long T = atol(tok);
        const size_t in_bytes = (size_t)T * (size_t)E * elem;
        unsigned char *host = malloc(in_bytes);
        CUdeviceptr in[ROTATE], ids[ROTATE], w[ROTATE];
        for (int r = 0; r < ROTATE; r++) {
            for (size_t i = 0; i < (size_t)T * (size_t)E; i++) {
                const float v = 4.0f * ((float)rand() / (float)RAND_MAX) - 2.0f;
                if (elem == 4) ((float *)host)[i] = v;
                else ((uint16_t *)host)[i] = run.spec.dtype == MOEJIT_DTYPE_BF16 ? mj_f32_to_bf16(v) : mj_f32_to_f16(v);
            }
            CU(d->mem_alloc(&in[r], in_bytes));
            CU(d->mem_alloc(&ids[r], (size_t)T * W * 8)); /* room for int64 ids */
            CU(d->mem_alloc(&w[r], (size_t)T * W * 4));
            CU(d->memcpy_htod(in[r], host, in_bytes));
            run.args[r] = (moejit_route_args){.logits = (void *)in[r], .bias = (float *)bias, .ids = (int32_t *)ids[r],
                                                .weights = (float *)w[r], .num_tokens = T};
        }
        if (run.serving) {
            for (int c = 0; c < n_ctx; c++) {
                run.ctx = ctxs[c];
                serving_table(&run, name, T, active[c] ? floor_pdl : floor, labels[c]);
            }
        } else {
            /* with two contexts: on, off, then off, on (drift cancels), the lower of each kept */
            float us[2] = {1e30f, 1e30f};
            for (int pass = 0; pass < n_ctx; pass++)
                for (int i = 0; i < n_ctx; i++) {
                    const int c = pass ? n_ctx - 1 - i : i;
                    run.ctx = ctxs[c];
                    const float t = graph_us(launch_route, &run);
                    if (t < us[c]) us[c] = t;
                }
            const double moved = (double)in_bytes + (double)T * W * 8;
            for (int c = 0; c < n_ctx; c++)
                printf("%-58s %-5s T=%-6ld %8.2f us  %5.2fx floor  %7.0f GB/s%s\n", name, mj_dtype_name(run.spec.dtype),
                       T, us[c], us[c] / (active[c] ? floor_pdl : floor), moved / (us[c] * 1e-6) / 1e9, labels[c]);
        }
        fflush(stdout);
        for (int r = 0; r < ROTATE; r++) d->mem_free(in[r]), d->mem_free(ids[r]), d->mem_free(w[r]);
        free(host);
    }
    printf("%-58s floor (empty kernel, same graph method): %.2f us\n", "", floor);
    if (g_pdl_capable)
        printf("%-58s floor with PDL (empty kernel + mj::pdl_begin, PDL launch): %.2f us\n", "", floor_pdl);
    else
        printf("%-58s floor with PDL: n/a (needs sm_90+ and a 12.3+ driver)\n", "");
    for (int c = 0; c < n_ctx; c++) moejit_close(ctxs[c]);
    return 0;
}
