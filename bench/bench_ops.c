/* GPU times of align, route_align, mx_scales, dispatch_layout, and permute / combine with their
 * backward (needs a GPU). Per shape and batch:
 *   us/launch  GPU time per call: a CUDA graph of 20 calls replayed 50 times, median replay / 20
 *   us/call    one call between two events on the stream (host launch overhead included), median of 200
 * align uses vLLM's measured shapes (E128/E256, K=8, B=64), each T on the path the library picks
 * and, marked *, on every other path that applies (onepass and the three launches at every T, the
 * small entry up to its 128 ids), so that each threshold is timed from both sides; route_align is
 * timed beside route
 * followed by align; mx_scales and the row ops report GB/s (the bytes that must move: read +
 * written, each input row counted once) to compare with the copy floor the benchmark harness
 * measures in the same run; dispatch_layout (DeepEP's shapes, int64 ids, every output) is printed
 * beside an empty kernel timed the same two ways (the launch floor).
 *   bench_ops [align|route_align|mx|dispatch_layout|rows] [--no-pdl | --pdl-both]   (default: all
 *   ops, PDL as MOEJIT_PDL says)
 * Prints whether programmatic dependent launch (PDL: moejit_config.pdl, MOEJIT_PDL; on by default)
 * is used. --no-pdl turns it off; --pdl-both times every row with it on and off (two contexts,
 * interleaved forth and back, the lower of two medians kept each), one row each (dispatch_layout
 * and the row ops: the first context only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit/driver.h"
#include "moejit.h"
#include "ops/align/align.h"
#include "moejit_reference.h"

#include "bench_common.h"
#include "bench_floor.h"

static const mj_driver *d;
static moejit_ctx *ctx; /* the context the call functions use: ctxs[c] while timing row c */
static moejit_ctx *ctxs[2];
static const char *labels[2] = {"", ""};
static int n_ctx = 1;
static CUstream stream;

static void *dev_alloc(size_t bytes, unsigned char fill)
{
    CUdeviceptr p;
    CU(d->mem_alloc(&p, bytes ? bytes : 16));
    CU(d->memset_d8(p, fill, bytes ? bytes : 16));
    return (void *)(uintptr_t)p;
}

static void dev_free(void *p)
{
    if (p) d->mem_free((CUdeviceptr)(uintptr_t)p);
}

typedef void (*call_fn)(const void *arg);

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* {us per launch (graph), us per call (events)} of f(arg) on `stream`. */
static void time_it(call_fn f, const void *arg, double out[2])
{
    enum { PER_GRAPH = 20, REPLAYS = 50, CALLS = 200 };
    f(arg); /* builds or loads the kernels before capture */
    CU(d->stream_synchronize(stream));
    CUgraph g;
    CUgraphExec exec;
    CU(d->stream_begin_capture(stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
    for (int i = 0; i < PER_GRAPH; i++) f(arg);
    CU(d->stream_end_capture(stream, &g));
    CU(d->graph_instantiate(&exec, g, 0));
    CUevent a, b;
    CU(d->event_create(&a, 0));
    CU(d->event_create(&b, 0));
    float t[CALLS];
    CU(d->graph_launch(exec, stream)); /* warm-up */
    for (int i = 0; i < REPLAYS; i++) {
        CU(d->event_record(a, stream));
        CU(d->graph_launch(exec, stream));
        CU(d->event_record(b, stream));
        CU(d->event_synchronize(b));
        CU(d->event_elapsed_time(&t[i], a, b));
    }
    qsort(t, REPLAYS, sizeof t[0], cmp_float);
    out[0] = 1e3 * t[REPLAYS / 2] / PER_GRAPH;
    for (int i = 0; i < CALLS; i++) {
        CU(d->event_record(a, stream));
        f(arg);
        CU(d->event_record(b, stream));
        CU(d->event_synchronize(b));
        CU(d->event_elapsed_time(&t[i], a, b));
    }
    qsort(t, CALLS, sizeof t[0], cmp_float);
    out[1] = 1e3 * t[CALLS / 2];
    d->event_destroy(a), d->event_destroy(b), d->graph_exec_destroy(exec), d->graph_destroy(g);
}

/* time_it of f(arg) with each context: out[c] for ctxs[c]; with two, on, off, then off, on (drift
 * cancels), the lower of each kept. */
static void time_each(call_fn f, const void *arg, double out[2][2])
{
    for (int c = 0; c < n_ctx; c++) out[c][0] = out[c][1] = 1e30;
    for (int pass = 0; pass < n_ctx; pass++)
        for (int i = 0; i < n_ctx; i++) {
            const int c = pass ? n_ctx - 1 - i : i;
            ctx = ctxs[c];
            double r[2];
            time_it(f, arg, r);
            for (int k = 0; k < 2; k++)
                if (r[k] < out[c][k]) out[c][k] = r[k];
        }
    ctx = ctxs[0];
}

/* ---- align ---- */

typedef struct align_case {
    moejit_align_spec spec;
    moejit_align_args args;
    int path; /* MJ_ALIGN_PATH_*: the library's choice, or one forced (mj_align_launch) */
} align_case;

static void call_align(const void *p)
{
    const align_case *c = p;
    CHECK(mj_align_launch(ctx, &c->spec, &c->args, c->path, (moejit_stream)stream));
}

static void bench_align(void)
{
    static const int es[] = {128, 256};
    static const int64_t ts[] = {1, 16, 32, 128, 256, 512, 1024, 2048, 4096, 8192, 16384};
    static const char *const names[] = {"small", "onepass", "tiled"};
    const int nt = (int)(sizeof ts / sizeof ts[0]);
    printf("\n%-28s %7s %-9s %11s %11s   (* forced: not the library's choice)\n", "align (K=8, B=64, all outputs)",
           "T", "path", "us/launch", "us/call");
    for (int e = 0; e < 2; e++)
        for (int t = 0; t < nt; t++) {
            align_case c = {.spec = {.num_experts = es[e], .block_size = 64}};
            const int64_t T = ts[t], N = T * 8;
            int64_t cap;
            mj_align_layout chosen, tiled; /* the tiled path's workspace serves every path */
            CHECK(moejit_align_capacity(&c.spec, T, 8, &cap));
            CHECK(mj_align_layout_for("align", es[e], 64, T, 8, 0, MJ_ALIGN_PATH_AUTO, &chosen));
            CHECK(mj_align_layout_for("align", es[e], 64, T, 8, 0, MJ_ALIGN_PATH_TILED, &tiled));
            int32_t *ids = malloc(4 * (size_t)N);
            for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)((i * 2654435761u) % (uint64_t)es[e]);
            void *d_ids = dev_alloc(4 * (size_t)N, 0);
            CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)d_ids, ids, 4 * (size_t)N));
            c.args = (moejit_align_args){
                .ids = d_ids, .num_tokens = T, .topk = 8,
                .out = {.counts = dev_alloc(4 * (size_t)es[e], 0), .offsets = dev_alloc(4 * (size_t)es[e] + 4, 0),
                        .sorted_ids = dev_alloc(4 * (size_t)cap, 0), .block_expert = dev_alloc(4 * (size_t)(cap / 64), 0),
                        .total_padded = dev_alloc(4, 0), .slot_of = dev_alloc(4 * (size_t)N, 0),
                        .workspace = dev_alloc(tiled.ws_bytes, 0), .workspace_bytes = tiled.ws_bytes}};
            for (int k = 0; k < 3; k++) { /* the library's path first, then the others */
                const int path = k == 0 ? chosen.path : k - (k <= chosen.path);
                mj_align_layout l;
                if (path == MJ_ALIGN_PATH_SMALL &&
                    mj_align_layout_for("align", es[e], 64, T, 8, 0, MJ_ALIGN_PATH_SMALL, &l) != MOEJIT_OK)
                    continue; /* past the small entry's ids */
                c.path = path;
                double r[2][2];
                time_each(call_align, &c, r);
                char label[16];
                snprintf(label, sizeof label, "%s%s", names[path], k ? "*" : "");
                for (int j = 0; j < n_ctx; j++)
                    printf("E=%-26d %7lld %-9s %11.2f %11.2f%s\n", es[e], (long long)T, label, r[j][0], r[j][1],
                           labels[j]);
            }
            const moejit_align_outputs *o = &c.args.out;
            dev_free(d_ids), dev_free(o->counts), dev_free(o->offsets), dev_free(o->sorted_ids);
            dev_free(o->block_expert), dev_free(o->total_padded), dev_free(o->slot_of), dev_free(o->workspace);
            free(ids);
        }
}

/* ---- route_align beside route + align ---- */

typedef struct ra_case {
    moejit_route_align_spec spec;
    moejit_route_align_args args;
    moejit_align_spec align_spec;
} ra_case;

static void call_route_align(const void *p)
{
    const ra_case *c = p;
    CHECK(moejit_route_align(ctx, &c->spec, &c->args, (moejit_stream)stream));
}

static void call_route_only(const void *p)
{
    const ra_case *c = p;
    CHECK(moejit_route(ctx, &c->spec.route, &c->args.route, (moejit_stream)stream));
}

static void call_route_then_align(const void *p)
{
    const ra_case *c = p;
    CHECK(moejit_route(ctx, &c->spec.route, &c->args.route, (moejit_stream)stream));
    moejit_align_args a = {.ids = c->args.route.ids, .num_tokens = c->args.route.num_tokens,
                           .topk = c->spec.route.topk + c->spec.route.shared_slots, .out = c->args.align};
    CHECK(moejit_align(ctx, &c->align_spec, &a, (moejit_stream)stream));
}

static void bench_route_align(void)
{
    static const int64_t ts[] = {1, 4, 8, 16, 32, 64, 128, 1024};
    const int nt = (int)(sizeof ts / sizeof ts[0]);
    ra_case c = {.spec = {.route = {.num_experts = 256, .topk = 8, .score = MOEJIT_SCORE_SIGMOID,
                                    .dtype = MOEJIT_DTYPE_BF16, .has_bias = 1, .renormalize = 1, .scale_output = 1,
                                    .routed_scaling_factor = 2.5f, .shared_slots = 1},
                          .block_size = 64}};
    c.align_spec = (moejit_align_spec){.num_experts = 257, .block_size = 64};
    int64_t fused;
    CHECK(moejit_route_align_fused_tokens(&c.spec, &fused));
    printf("\n%-44s %6s %11s %11s %13s %13s %11s %8s\n", "route_align E=256 K=8 S=1 sigmoid+bias bf16", "T",
           "us/launch", "us/call", "route+align", "(us/call)", "route only", "vs route");
    for (int t = 0; t < nt; t++) {
        const int64_t T = ts[t], W = 9;
        int64_t cap;
        size_t ws, ws_align;
        CHECK(moejit_route_align_capacity(&c.spec, T, &cap));
        CHECK(moejit_route_align_workspace_bytes(&c.spec, T, &ws));
        CHECK(moejit_align_workspace_bytes(&c.align_spec, T, (int32_t)W, &ws_align));
        if (ws_align > ws) ws = ws_align;
        /* spread logits (bf16, a hash of the index), so that tokens pick different experts and
         * align writes the padding of many of them, as in serving (equal logits would send every
         * token to experts 0..7) */
        uint16_t *logits = malloc(2 * 256 * (size_t)T);
        for (int64_t i = 0; i < 256 * T; i++)
            logits[i] = (uint16_t)(0x3c00u + (uint16_t)((uint64_t)(i * 2654435761u) >> 7 & 0x3ffu));
        void *d_logits = dev_alloc(2 * 256 * (size_t)T, 0);
        CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)d_logits, logits, 2 * 256 * (size_t)T));
        free(logits);
        c.args.route = (moejit_route_args){.logits = d_logits,
                                           .bias = dev_alloc(4 * 256, 0), .ids = dev_alloc(4 * (size_t)(T * W), 0),
                                           .weights = dev_alloc(4 * (size_t)(T * W), 0), .num_tokens = T};
        c.args.align = (moejit_align_outputs){
            .counts = dev_alloc(4 * 257, 0), .offsets = dev_alloc(4 * 258, 0), .sorted_ids = dev_alloc(4 * (size_t)cap, 0),
            .block_expert = dev_alloc(4 * (size_t)(cap / 64), 0), .total_padded = dev_alloc(4, 0),
            .slot_of = dev_alloc(4 * (size_t)(T * W), 0), .workspace = ws ? dev_alloc(ws, 0) : NULL,
            .workspace_bytes = ws};
        double fused_t[2][2], plain_t[2][2], route_t[2][2];
        time_each(call_route_align, &c, fused_t);
        time_each(call_route_then_align, &c, plain_t);
        time_each(call_route_only, &c, route_t);
        for (int k = 0; k < n_ctx; k++)
            printf("%-44s %6lld %11.2f %11.2f %13.2f %13.2f %11.2f %7.2fx%s\n",
                   T <= fused ? "  (fused)" : "  (fallback)", (long long)T, fused_t[k][0], fused_t[k][1], plain_t[k][0], plain_t[k][1], route_t[k][0],
                   fused_t[k][0] / route_t[k][0], labels[k]);
        const moejit_route_args *r = &c.args.route;
        const moejit_align_outputs *o = &c.args.align;
        dev_free((void *)r->logits), dev_free((void *)r->bias), dev_free(r->ids), dev_free(r->weights);
        dev_free(o->counts), dev_free(o->offsets), dev_free(o->sorted_ids), dev_free(o->block_expert);
        dev_free(o->total_padded), dev_free(o->slot_of), dev_free(o->workspace);
    }
}

/* ---- mx_scales ---- */

typedef struct mx_case {
    moejit_mx_scales_spec spec;
    moejit_mx_scales_args args;
} mx_case;

static void call_mx(const void *p)
{
    const mx_case *c = p;
    CHECK(moejit_mx_scales(ctx, &c->spec, &c->args, (moejit_stream)stream));
}

static void bench_mx(void)
{
    /* torchao's 3D table (G, N, K/32), its 2D M-groups case (131072 × 64, 8 groups) and a
     * weight-gradient 2D K-groups case (8192 rows × K = 7168 cut into 8 expert groups: C = 224) */
    static const struct {
        int64_t g, r;
        int c;
        moejit_mx_layout layout;
    } cases[] = {{1, 8192, 160, MOEJIT_MX_3D},         {16, 8192, 160, MOEJIT_MX_3D},
                 {1, 5120, 256, MOEJIT_MX_3D},         {16, 5120, 256, MOEJIT_MX_3D},
                 {16, 2048, 224, MOEJIT_MX_3D},        {8, 131072, 64, MOEJIT_MX_2D_GROUPS},
                 {256, 16384, 224, MOEJIT_MX_2D_GROUPS}, {8, 8192, 224, MOEJIT_MX_2D_K_GROUPS}};
    static const char *const names[] = {"3D G,R,C", "2D G,M,C", "2D K G,M,C"};
    printf("\n%-36s %11s %11s %9s\n", "mx_scales to blocked", "us/launch", "us/call", "GB/s");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mx_case c = {.spec = {.cols = cases[i].c}};
        const moejit_mx_layout layout = cases[i].layout;
        const int grouped = layout != MOEJIT_MX_3D;
        size_t out_bytes;
        CHECK(moejit_mx_scales_blocked_bytes(&c.spec, layout, cases[i].g, cases[i].r, &out_bytes));
        const size_t in_bytes = (size_t)((grouped ? 1 : cases[i].g) * cases[i].r * cases[i].c);
        int32_t *ends = NULL;
        if (grouped) { /* even groups of rows; groups of columns moved by -1, 0 or +1 (sizes 26..30,
                        * mostly not multiples of 4, as tokens per expert / 32 are) */
            const int k = layout == MOEJIT_MX_2D_K_GROUPS;
            const int64_t total = k ? cases[i].c : cases[i].r;
            ends = malloc(4 * (size_t)cases[i].g);
            for (int64_t g = 0; g < cases[i].g; g++)
                ends[g] = (int32_t)((g + 1) * total / cases[i].g + (k && g + 1 < cases[i].g ? g % 3 - 1 : 0));
        }
        c.args = (moejit_mx_scales_args){.layout = layout, .in = dev_alloc(in_bytes, 0x7f), .out = dev_alloc(out_bytes, 0),
                                         .groups = cases[i].g, .rows = cases[i].r};
        if (ends) {
            c.args.group_ends = dev_alloc(4 * (size_t)cases[i].g, 0);
            CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)c.args.group_ends, ends, 4 * (size_t)cases[i].g));
        }
        double r[2][2];
        time_each(call_mx, &c, r);
        char shape[64];
        snprintf(shape, sizeof shape, "%s (%lld, %lld, %d)", names[layout], (long long)cases[i].g,
                 (long long)cases[i].r, cases[i].c);
        for (int k = 0; k < n_ctx; k++)
            printf("%-36s %11.2f %11.2f %9.0f%s\n", shape, r[k][0], r[k][1],
                   (double)(in_bytes + out_bytes) / (r[k][0] * 1e3), labels[k]);
        dev_free((void *)c.args.in), dev_free(c.args.out), dev_free((void *)c.args.group_ends), free(ends);
    }
}

/* ---- dispatch_layout beside the launch floor ---- */

static CUfunction g_empty;

static void call_empty(const void *p)
{
    (void)p;
    CU(d->launch_kernel(g_empty, 1, 1, 1, 32, 1, 1, 0, stream, NULL, NULL));
}

static void load_empty_kernel(void) { bench_empty_kernels(d, &g_empty, NULL); }

typedef struct dl_case {
    moejit_dispatch_layout_spec spec;
    moejit_dispatch_layout_args args;
} dl_case;

static void call_dispatch_layout(const void *p)
{
    const dl_case *c = p;
    CHECK(moejit_dispatch_layout(ctx, &c->spec, &c->args, (moejit_stream)stream));
}

static void bench_dispatch_layout(void)
{
    load_empty_kernel();
    double floor_t[2];
    time_it(call_empty, NULL, floor_t);
    static const int shapes[][2] = {{256, 8}, {384, 16}};
    static const int64_t ts[] = {1, 128, 4096, 16384};
    printf("\n%-40s %7s %11s %11s %9s\n", "dispatch_layout (K=8, int64 ids, all out)", "T", "us/launch", "us/call",
           "x floor");
    printf("%-40s %7s %11.2f %11.2f %9s\n", "empty kernel (the launch floor)", "", floor_t[0], floor_t[1], "1.00x");
    for (int s = 0; s < 2; s++)
        for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
            const int E = shapes[s][0], R = shapes[s][1], K = 8;
            const int64_t T = ts[t];
            dl_case c = {.spec = {.num_experts = E, .num_ranks = R, .topk = K, .id_dtype = MOEJIT_INDEX_INT64}};
            int64_t *ids = malloc(sizeof *ids * (size_t)(T * K));
            uint64_t x = 0x9e3779b97f4a7c15ull;
            for (int64_t i = 0; i < T; i++) /* K distinct experts a token, as route gives */
                for (int k = 0; k < K; k++) {
                    int again;
                    do {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        ids[i * K + k] = (int64_t)(x % (uint64_t)E);
                        again = 0;
                        for (int j = 0; j < k; j++) again |= ids[i * K + j] == ids[i * K + k];
                    } while (again);
                }
            void *d_ids = dev_alloc(sizeof *ids * (size_t)(T * K), 0);
            CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)d_ids, ids, sizeof *ids * (size_t)(T * K)));
            c.args = (moejit_dispatch_layout_args){
                .ids = d_ids, .num_tokens = T, .tokens_per_rank = dev_alloc(4 * (size_t)R, 0),
                .tokens_per_node = dev_alloc(4 * (size_t)(R / 8), 0), .tokens_per_expert = dev_alloc(4 * (size_t)E, 0),
                .is_token_in_rank = dev_alloc((size_t)(T * R), 0)};
            double r[2];
            time_it(call_dispatch_layout, &c, r);
            char shape[48];
            snprintf(shape, sizeof shape, "E=%d R=%d", E, R);
            printf("%-40s %7lld %11.2f %11.2f %8.2fx\n", shape, (long long)T, r[0], r[1], r[0] / floor_t[0]);
            dev_free(d_ids), dev_free(c.args.tokens_per_rank), dev_free(c.args.tokens_per_node);
            dev_free(c.args.tokens_per_expert), dev_free(c.args.is_token_in_rank), free(ids);
        }
}

/* ---- permute and combine, forward and backward ---- */

typedef struct rows_case {
    moejit_permute_spec permute;
    moejit_permute_args permute_args;
    moejit_combine_spec combine;
    moejit_combine_args combine_args;
    moejit_permute_backward_spec permute_bwd;
    moejit_permute_backward_args permute_bwd_args;
    moejit_combine_backward_spec combine_bwd;
    moejit_combine_backward_args combine_bwd_args;
} rows_case;

static void call_permute(const void *p)
{
    const rows_case *c = p;
    CHECK(moejit_permute(ctx, &c->permute, &c->permute_args, (moejit_stream)stream));
}

static void call_combine(const void *p)
{
    const rows_case *c = p;
    CHECK(moejit_combine(ctx, &c->combine, &c->combine_args, (moejit_stream)stream));
}

static void call_permute_backward(const void *p)
{
    const rows_case *c = p;
    CHECK(moejit_permute_backward(ctx, &c->permute_bwd, &c->permute_bwd_args, (moejit_stream)stream));
}

static void call_combine_backward(const void *p)
{
    const rows_case *c = p;
    CHECK(moejit_combine_backward(ctx, &c->combine_bwd, &c->combine_bwd_args, (moejit_stream)stream));
}

static void rows_line(const char *what, int64_t T, int64_t R, call_fn f, const rows_case *c, double bytes)
{
    double r[2];
    time_it(f, c, r);
    printf("%-40s %6lld %6lld %11.2f %11.2f %9.0f\n", what, (long long)T, (long long)R, r[0], r[1], bytes / (r[0] * 1e3));
}

/* H = 7168 bf16 (DeepSeek-V3's hidden size), K = 8, maps from align over E = 256 experts, B = 64
 * (R = total_padded rows, padding included). Bytes that must move, e = 2 bytes, N = kept slots:
 *   permute            x once (T·H·e) + sorted_ids + ids + scale, out R·H·e
 *   combine            N rows of y + slot_of + weights, out T·H·e
 *   permute_backward   N rows of grad_out + slot_of + ids + scale, grad_x T·H·e
 *   combine_backward   grad_out T·H·e + slot_of (+ N rows of y for grad_weights) (+ weights and
 *                      sorted_ids, grad_y R·H·e for grad_y) (+ grad_weights T·K·4) */
static void bench_rows(void)
{
    enum { H = 7168, K = 8, E = 256, B = 64 };
    static const int64_t ts[] = {1, 128, 4096};
    const double e = 2, row = (double)H * e;
    printf("\n%-40s %6s %6s %11s %11s %9s\n", "permute/combine H=7168 bf16 K=8 E=256 B=64", "T", "R", "us/launch",
           "us/call", "GB/s");
    for (size_t t = 0; t < sizeof ts / sizeof ts[0]; t++) {
        const int64_t T = ts[t], NK = T * K;
        moejit_align_spec aspec = {.num_experts = E, .block_size = B};
        int64_t cap;
        CHECK(moejit_align_capacity(&aspec, T, K, &cap));
        int32_t *ids = malloc(4 * (size_t)NK), *sorted = malloc(4 * (size_t)cap), *slot = malloc(4 * (size_t)NK), total;
        float *w = malloc(4 * (size_t)NK), scale[E];
        for (int64_t i = 0; i < NK; i++) {
            ids[i] = (int32_t)((i * 2654435761u) % (uint64_t)E);
            w[i] = 0.125f;
        }
        for (int x = 0; x < E; x++) scale[x] = 1.0f + (float)x / E;
        moejit_align_args aa = {.ids = ids, .num_tokens = T, .topk = K,
                                .out = {.sorted_ids = sorted, .total_padded = &total, .slot_of = slot}};
        CHECK(moejit_align_reference(&aspec, &aa));
        const int64_t R = total;
        int64_t kept = 0;
        for (int64_t i = 0; i < NK; i++) kept += slot[i] >= 0;
        void *d_ids = dev_alloc(4 * (size_t)NK, 0), *d_sorted = dev_alloc(4 * (size_t)R, 0), *d_slot = dev_alloc(4 * (size_t)NK, 0);
        void *d_w = dev_alloc(4 * (size_t)NK, 0), *d_scale = dev_alloc(4 * E, 0);
        CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)d_ids, ids, 4 * (size_t)NK));
        CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)d_sorted, sorted, 4 * (size_t)R));
        CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)d_slot, slot, 4 * (size_t)NK));
        CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)d_w, w, 4 * (size_t)NK));
        CU(d->memcpy_htod((CUdeviceptr)(uintptr_t)d_scale, scale, 4 * E));
        /* token rows [T, H] and expert-ordered rows [R, H], two of each (an input and an output) */
        void *tok_in = dev_alloc((size_t)(T * H) * 2, 0x3c), *tok_out = dev_alloc((size_t)(T * H) * 2, 0);
        void *rows_in = dev_alloc((size_t)(R * H) * 2, 0x3c), *rows_out = dev_alloc((size_t)(R * H) * 2, 0);
        void *gw = dev_alloc(4 * (size_t)NK, 0);
        rows_case c = {
            .permute = {.hidden = H, .dtype = MOEJIT_DTYPE_BF16, .has_scale = 1},
            .permute_args = {.x = tok_in, .sorted_ids = d_sorted, .ids = d_ids, .scale = d_scale, .out = rows_out,
                             .num_tokens = T, .topk = K, .num_experts = E, .num_rows = R},
            .combine = {.hidden = H, .dtype = MOEJIT_DTYPE_BF16},
            .combine_args = {.y = rows_in, .slot_of = d_slot, .weights = d_w, .out = tok_out, .num_tokens = T, .topk = K,
                             .num_rows = R},
            .permute_bwd = {.hidden = H, .dtype = MOEJIT_DTYPE_BF16, .has_scale = 1},
            .permute_bwd_args = {.grad_out = rows_in, .slot_of = d_slot, .ids = d_ids, .scale = d_scale,
                                 .grad_x = tok_out, .num_tokens = T, .topk = K, .num_experts = E, .num_rows = R},
            .combine_bwd = {.hidden = H, .dtype = MOEJIT_DTYPE_BF16},
            .combine_bwd_args = {.grad_out = tok_in, .y = rows_in, .slot_of = d_slot, .weights = d_w,
                                 .sorted_ids = d_sorted, .grad_y = rows_out, .grad_weights = gw, .num_tokens = T,
                                 .topk = K, .num_rows = R},
        };
        const double maps = 4.0 * (double)NK, tok = (double)T * row, rows_all = (double)R * row, rows_kept = (double)kept * row;
        rows_line("permute (scaled)", T, R, call_permute, &c, tok + 4.0 * (double)R + maps + rows_all);
        rows_line("permute_backward (scaled)", T, R, call_permute_backward, &c, rows_kept + 2 * maps + tok);
        rows_line("combine", T, R, call_combine, &c, rows_kept + 2 * maps + tok);
        rows_line("combine_backward grad_y + grad_weights", T, R, call_combine_backward, &c,
                  tok + rows_kept + 3 * maps + 4.0 * (double)R + rows_all);
        c.combine_bwd_args.grad_weights = NULL;
        rows_line("combine_backward grad_y", T, R, call_combine_backward, &c, tok + 2 * maps + 4.0 * (double)R + rows_all);
        c.combine_bwd_args.grad_weights = gw, c.combine_bwd_args.grad_y = NULL;
        rows_line("combine_backward grad_weights", T, R, call_combine_backward, &c, tok + rows_kept + 2 * maps);
        dev_free(d_ids), dev_free(d_sorted), dev_free(d_slot), dev_free(d_w), dev_free(d_scale);
        dev_free(tok_in), dev_free(tok_out), dev_free(rows_in), dev_free(rows_out), dev_free(gw);
        free(ids), free(sorted), free(slot), free(w);
    }
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    int pdl_off = 0, pdl_both = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-pdl")) pdl_off = 1;
        else if (!strcmp(argv[i], "--pdl-both")) pdl_both = 1;
        else if (!only && (!strcmp(argv[i], "align") || !strcmp(argv[i], "route_align") || !strcmp(argv[i], "mx") ||
                           !strcmp(argv[i], "dispatch_layout") || !strcmp(argv[i], "rows")))
            only = argv[i];
        else {
            fprintf(stderr, "usage: bench_ops [align|route_align|mx|dispatch_layout|rows] [--no-pdl | --pdl-both]\n");
            return 2;
        }
    }
    CHECK(mj_driver_get(&d));
    CUdevice dev;
    int retained;
    CHECK(mj_driver_current_device(d, 0, &dev, &retained));
    CU(d->stream_create(&stream, CU_STREAM_NON_BLOCKING));
    if (pdl_both) {
        const moejit_config on = {.pdl = 1}, off = {.pdl = 2};
        CHECK(moejit_open(&on, &ctxs[0]));
        CHECK(moejit_open(&off, &ctxs[1]));
        labels[0] = "  [PDL on]", labels[1] = "  [PDL off]", n_ctx = 2;
    } else {
        const moejit_config cfg = {.pdl = pdl_off ? 2 : 0};
        CHECK(moejit_open(&cfg, &ctxs[0]));
    }
    ctx = ctxs[0];
    char arch[16];
    CHECK(moejit_ctx_device_arch(ctx, arch, sizeof arch));
    printf("moejit %s on %s, driver %d\n", MOEJIT_VERSION_STRING, arch, d->version);
    for (int c = 0; c < n_ctx; c++) {
        int requested, active;
        CHECK(moejit_ctx_pdl(ctxs[c], &requested, &active));
        printf("PDL (programmatic dependent launch)%s: %s, %s\n", labels[c], requested ? "requested" : "off",
               active ? "used" : requested ? "not used (needs sm_90+ and a 12.3+ driver)" : "not used");
    }
    if (!only || !strcmp(only, "align")) bench_align();
    if (!only || !strcmp(only, "route_align")) bench_route_align();
    if (!only || !strcmp(only, "mx")) bench_mx();
    if (!only || !strcmp(only, "dispatch_layout")) bench_dispatch_layout();
    if (!only || !strcmp(only, "rows")) bench_rows();
    for (int c = 0; c < n_ctx; c++) moejit_close(ctxs[c]);
    d->stream_destroy(stream);
    return 0;
}
