/* moe_layer — a miniature Mixture-of-Experts layer on the GPU with moejit, checked on the CPU.
 *
 *   moe_layer [--model kimi-k2] [--tokens 64] [--hidden 1024] [--dtype bf16|f16|f32] [--block 16]
 *
 *   1. route    the router logits [T, E] → ids [T, K] and weights [T, K]      (moejit_route)
 *   2. align    ids → expert-sorted maps: sorted_ids [R] (flat t*K+k per row, expert by expert,
 *               each expert padded to the block size B with T*K) and slot_of [T, K] (moejit_align)
 *   3. permute  gather the tokens' hidden states [T, H] into expert order [R, H]; the "experts"
 *               of this miniature are a per-expert scale, applied on the way (moejit_permute)
 *   4. combine  out[t] = Σ_k weight[t,k] · y[slot_of[t,k]]                     (moejit_combine)
 *   so out[t] = Σ_k weight[t,k] · scale[id[t,k]] · x[t], which the CPU checks in double; the GPU's
 *   align maps are compared entry for entry, permute and combine bit for bit, with the C references.
 *
 * Without a GPU it runs the same layer with the C references only (and says so). Under
 * MOEJIT_NO_COMPILE=1 (a prewarmed deployment) every kernel must come from the cache:
 * examples/prewarm_deploy.sh prewarms exactly the kernels this program uses. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* moejit_ctx_stats is in the experimental section (it may change between minor versions). */
#define MOEJIT_EXPERIMENTAL_API
#include "moejit.h"
#include "moejit_reference.h"

/* ---- host number formats ---------------------------------------------------------------------- */

static float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float f16_to_f32(uint16_t h)
{
    const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    const float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? INFINITY : ldexpf((float)(m | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

/* Round to nearest even f16; values too small for a normal f16 become zero (the example's inputs
 * only need to be some f16 value: everything downstream reads the stored bits). */
static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const int32_t e = (int32_t)((u >> 23) & 0xffu) - 127 + 15;
    if (e <= 0) return (uint16_t)sign;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    uint32_t h = ((uint32_t)e << 10) | ((u >> 13) & 0x3ffu);
    const uint32_t rem = u & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

static size_t elem_size(moejit_dtype d) { return d == MOEJIT_DTYPE_F32 ? 4 : 2; }

static float load(const void *p, moejit_dtype d, int64_t i)
{
    if (d == MOEJIT_DTYPE_BF16) return bf16_to_f32(((const uint16_t *)p)[i]);
    if (d == MOEJIT_DTYPE_F16) return f16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

static void store(void *p, moejit_dtype d, int64_t i, float v)
{
    if (d == MOEJIT_DTYPE_BF16) ((uint16_t *)p)[i] = f32_to_bf16(v);
    else if (d == MOEJIT_DTYPE_F16) ((uint16_t *)p)[i] = f32_to_f16(v);
    else ((float *)p)[i] = v;
}

/* ---- the layer ---------------------------------------------------------------------------------- */

typedef struct layer {
    moejit_route_spec route;
    moejit_align_spec align;
    moejit_permute_spec permute;
    moejit_combine_spec combine;
    int64_t T;
    int H, E, K, B; /* K: slots per token (route's K + shared slots) */
    int64_t cap;    /* rows of the expert-ordered buffer: moejit_align_capacity() */
} layer;

/* Host buffers. */
typedef struct host {
    void *logits, *x, *y, *out, *ref_y, *ref_out;
    float *bias, *scale, *weights;
    int32_t *ids, *sorted, *slot_of, *ref_sorted, *ref_slot_of;
} host;

static int check(const char *what, moejit_status st, moejit_ctx *ctx)
{
    if (st == MOEJIT_OK) return 0;
    fprintf(stderr, "%s: %s: %s\n", what, moejit_status_str(st), moejit_last_error(ctx));
    return 1;
}

#define CUDA(call)                                                                                         \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_));                                    \
            return 1;                                                                                      \
        }                                                                                                  \
    } while (0)

/* align's arguments over ids [T, K]: the maps the layer needs (sorted_ids and slot_of), the
 * padded total, and a workspace for batches align does in three launches. The shared slots' ids
 * (E..E+S-1) are outside [0, E): align drops them (slot -1) and combine skips them. */
static moejit_align_args align_args(const layer *L, const int32_t *ids, int32_t *sorted, int32_t *slot_of,
                                    int32_t *total, void *workspace, size_t workspace_bytes)
{
    return (moejit_align_args){.ids = ids, .num_tokens = L->T, .topk = L->K,
                               .out = {.sorted_ids = sorted, .sorted_capacity = L->cap, .slot_of = slot_of,
                                       .total_padded = total, .workspace = workspace,
                                       .workspace_bytes = workspace_bytes}};
}

/* Permute and combine with the C references on the maps in h (what the GPU must match). */
static int reference_layer(const layer *L, host *h)
{
    moejit_permute_args pa = {.x = h->x, .sorted_ids = h->sorted, .ids = h->ids, .scale = h->scale, .out = h->ref_y,
                              .num_tokens = L->T, .topk = L->K, .num_experts = L->E, .num_rows = L->cap};
    moejit_combine_args ca = {.y = h->ref_y, .slot_of = h->slot_of, .weights = h->weights, .out = h->ref_out,
                              .num_tokens = L->T, .topk = L->K, .num_rows = L->cap};
    return check("moejit_permute_reference", moejit_permute_reference(&L->permute, &pa), NULL) ||
           check("moejit_combine_reference", moejit_combine_reference(&L->combine, &ca), NULL);
}

/* out[t] against Σ_k w·scale·x in double, within the roundings of the dtype. */
static int check_math(const layer *L, const host *h, const void *out, const char *who)
{
    const double eps = L->permute.dtype == MOEJIT_DTYPE_F32 ? 1e-6 : L->permute.dtype == MOEJIT_DTYPE_F16 ? 2e-3 : 1.6e-2;
    int64_t bad = 0;
    double worst = 0;
    for (int64_t t = 0; t < L->T; t++)
        for (int j = 0; j < L->H; j++) {
            const double xv = load(h->x, L->permute.dtype, t * L->H + j);
            double want = 0, mag = 0;
            for (int k = 0; k < L->K; k++) {
                const int32_t e = h->ids[t * L->K + k];
                if (e < 0 || e >= L->E) continue; /* a shared slot: not an expert of this layer */
                want += (double)h->weights[t * L->K + k] * h->scale[e] * xv;
                mag += fabs((double)h->weights[t * L->K + k] * h->scale[e] * xv);
            }
            const double got = load(out, L->permute.dtype, t * L->H + j), err = fabs(got - want);
            if (mag > 0 && err / mag > worst) worst = err / mag;
            if (err > eps * mag + 1e-30) bad++;
        }
    printf("%s: out = sum_k w * scale[expert] * x within %.1e (largest relative error %.2e): %s\n", who, eps, worst,
           bad ? "MISMATCH" : "ok");
    return bad != 0;
}

static int run_gpu(moejit_ctx *ctx, const layer *L, host *h)
{
    const size_t es = elem_size(L->permute.dtype), W = (size_t)(L->T * L->K);
    void *d_logits, *d_x, *d_y, *d_out;
    float *d_bias = NULL, *d_scale, *d_w;
    int32_t *d_ids, *d_sorted, *d_slot;
    CUDA(cudaMalloc(&d_logits, (size_t)(L->T * L->E) * elem_size(L->route.dtype)));
    CUDA(cudaMalloc(&d_x, (size_t)(L->T * L->H) * es));
    CUDA(cudaMalloc(&d_y, (size_t)(L->cap * L->H) * es));
    CUDA(cudaMalloc(&d_out, (size_t)(L->T * L->H) * es));
    CUDA(cudaMalloc((void **)&d_scale, sizeof(float) * (size_t)L->E));
    CUDA(cudaMalloc((void **)&d_w, sizeof(float) * W));
    CUDA(cudaMalloc((void **)&d_ids, sizeof(int32_t) * W));
    CUDA(cudaMalloc((void **)&d_sorted, sizeof(int32_t) * (size_t)L->cap));
    CUDA(cudaMalloc((void **)&d_slot, sizeof(int32_t) * W));
    if (L->route.has_bias) {
        CUDA(cudaMalloc((void **)&d_bias, sizeof(float) * (size_t)L->E));
        CUDA(cudaMemcpy(d_bias, h->bias, sizeof(float) * (size_t)L->E, cudaMemcpyHostToDevice));
    }
    CUDA(cudaMemcpy(d_logits, h->logits, (size_t)(L->T * L->E) * elem_size(L->route.dtype), cudaMemcpyHostToDevice));
    CUDA(cudaMemcpy(d_x, h->x, (size_t)(L->T * L->H) * es, cudaMemcpyHostToDevice));
    CUDA(cudaMemcpy(d_scale, h->scale, sizeof(float) * (size_t)L->E, cudaMemcpyHostToDevice));
    cudaStream_t stream;
    CUDA(cudaStreamCreate(&stream));

    /* 1. route */
    moejit_route_args ra = {.logits = d_logits, .bias = d_bias, .ids = d_ids, .weights = d_w, .num_tokens = L->T};
    if (check("moejit_route", moejit_route(ctx, &L->route, &ra, stream), ctx)) return 1;
    /* 2. align on the device. Rows past the padded total are not written by align: fill them with
     * -1 first, a padding value permute turns into zero rows. */
    size_t ws_bytes = 0;
    void *d_ws = NULL;
    int32_t *d_total, total = 0;
    if (check("moejit_align_workspace_bytes", moejit_align_workspace_bytes(&L->align, L->T, L->K, &ws_bytes), ctx))
        return 1;
    if (ws_bytes) CUDA(cudaMalloc(&d_ws, ws_bytes));
    CUDA(cudaMalloc((void **)&d_total, sizeof(int32_t)));
    CUDA(cudaMemsetAsync(d_sorted, 0xff, sizeof(int32_t) * (size_t)L->cap, stream));
    moejit_align_args aa = align_args(L, d_ids, d_sorted, d_slot, d_total, d_ws, ws_bytes);
    if (check("moejit_align", moejit_align(ctx, &L->align, &aa, stream), ctx)) return 1;
    /* 3. permute, scaled per expert */
    moejit_permute_args pa = {.x = d_x, .sorted_ids = d_sorted, .ids = d_ids, .scale = d_scale, .out = d_y,
                              .num_tokens = L->T, .topk = L->K, .num_experts = L->E, .num_rows = L->cap};
    if (check("moejit_permute", moejit_permute(ctx, &L->permute, &pa, stream), ctx)) return 1;
    /* 4. combine */
    moejit_combine_args ca = {.y = d_y, .slot_of = d_slot, .weights = d_w, .out = d_out, .num_tokens = L->T,
                              .topk = L->K, .num_rows = L->cap};
    if (check("moejit_combine", moejit_combine(ctx, &L->combine, &ca, stream), ctx)) return 1;
    CUDA(cudaMemcpyAsync(h->ids, d_ids, sizeof(int32_t) * W, cudaMemcpyDeviceToHost, stream));
    CUDA(cudaMemcpyAsync(h->weights, d_w, sizeof(float) * W, cudaMemcpyDeviceToHost, stream));
    CUDA(cudaMemcpyAsync(h->sorted, d_sorted, sizeof(int32_t) * (size_t)L->cap, cudaMemcpyDeviceToHost, stream));
    CUDA(cudaMemcpyAsync(h->slot_of, d_slot, sizeof(int32_t) * W, cudaMemcpyDeviceToHost, stream));
    CUDA(cudaMemcpyAsync(&total, d_total, sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
    CUDA(cudaMemcpyAsync(h->y, d_y, (size_t)(L->cap * L->H) * es, cudaMemcpyDeviceToHost, stream));
    CUDA(cudaMemcpyAsync(h->out, d_out, (size_t)(L->T * L->H) * es, cudaMemcpyDeviceToHost, stream));
    CUDA(cudaStreamSynchronize(stream));
    printf("GPU: routed %lld tokens to %d experts (K = %d), %lld of %lld expert-ordered rows used\n", (long long)L->T,
           L->E, L->K, (long long)total, (long long)L->cap);

    /* The routing itself against its reference: the same experts for every token. */
    int32_t *ref_ids = malloc(sizeof(int32_t) * W);
    float *ref_w = malloc(sizeof(float) * W);
    int rc = check("moejit_route_reference",
                   moejit_route_reference(&L->route,
                                          &(moejit_route_args){.logits = h->logits, .bias = h->bias, .ids = ref_ids,
                                                               .weights = ref_w, .num_tokens = L->T, .row_stride = L->E}),
                   NULL);
    int64_t id_mismatch = 0;
    for (int64_t t = 0; t < L->T && !rc; t++)
        for (int k = 0; k < L->K; k++) {
            int found = 0;
            for (int j = 0; j < L->K; j++) found |= ref_ids[t * L->K + j] == h->ids[t * L->K + k];
            id_mismatch += !found;
        }
    printf("route: experts %s the C reference\n", id_mismatch ? "DIFFER FROM" : "match");
    free(ref_ids), free(ref_w);
    rc |= id_mismatch != 0;

    /* align against its reference on the ids the GPU routed: the same maps, entry for entry */
    int32_t ref_total = 0;
    for (int64_t r = 0; r < L->cap; r++) h->ref_sorted[r] = -1;
    moejit_align_args ha = align_args(L, h->ids, h->ref_sorted, h->ref_slot_of, &ref_total, NULL, 0);
    rc |= check("moejit_align_reference", moejit_align_reference(&L->align, &ha), NULL);
    const int maps_same = ref_total == total && !memcmp(h->sorted, h->ref_sorted, sizeof(int32_t) * (size_t)L->cap) &&
                          !memcmp(h->slot_of, h->ref_slot_of, sizeof(int32_t) * W);
    printf("align: maps %s the C reference\n", maps_same ? "match" : "DIFFER FROM");
    rc |= !maps_same;

    /* permute and combine bit for bit against the references on the same maps */
    rc |= reference_layer(L, h);
    const int y_same = !memcmp(h->y, h->ref_y, (size_t)(L->cap * L->H) * es);
    const int out_same = !memcmp(h->out, h->ref_out, (size_t)(L->T * L->H) * es);
    printf("permute: %s the C reference bit for bit\ncombine: %s the C reference bit for bit\n",
           y_same ? "matches" : "DIFFERS FROM", out_same ? "matches" : "DIFFERS FROM");
    rc |= !y_same || !out_same;
    rc |= check_math(L, h, h->out, "GPU");

    cudaFree(d_logits), cudaFree(d_x), cudaFree(d_y), cudaFree(d_out), cudaFree(d_bias), cudaFree(d_scale);
    cudaFree(d_w), cudaFree(d_ids), cudaFree(d_sorted), cudaFree(d_slot), cudaFree(d_total), cudaFree(d_ws);
    cudaStreamDestroy(stream);
    return rc;
}

/* No GPU: the same layer with the references, so the example still shows (and checks) the math. */
static int run_cpu(const layer *L, host *h)
{
    if (check("moejit_route_reference",
              moejit_route_reference(&L->route,
                                     &(moejit_route_args){.logits = h->logits, .bias = h->bias, .ids = h->ids,
                                                          .weights = h->weights, .num_tokens = L->T, .row_stride = L->E}),
              NULL))
        return 1;
    int32_t total = 0;
    for (int64_t r = 0; r < L->cap; r++) h->sorted[r] = -1;
    moejit_align_args ha = align_args(L, h->ids, h->sorted, h->slot_of, &total, NULL, 0);
    if (check("moejit_align_reference", moejit_align_reference(&L->align, &ha), NULL)) return 1;
    if (reference_layer(L, h)) return 1;
    return check_math(L, h, h->ref_out, "CPU references");
}

static int usage(void)
{
    fprintf(stderr, "usage: moe_layer [--model NAME] [--tokens T] [--hidden H] [--dtype bf16|f16|f32] [--block B]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *model = "kimi-k2", *dtype = "bf16";
    long T = 64, H = 1024, B = 16;
    for (int i = 1; i < argc; i += 2) { /* --flag value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--tokens")) T = strtol(v, NULL, 10);
        else if (!strcmp(a, "--hidden")) H = strtol(v, NULL, 10);
        else if (!strcmp(a, "--block")) B = strtol(v, NULL, 10);
        else return usage();
    }
    layer L;
    memset(&L, 0, sizeof L);
    if (moejit_route_preset(model, &L.route) != MOEJIT_OK) {
        fprintf(stderr, "moe_layer: %s\n", moejit_last_error(NULL));
        return 2;
    }
    const moejit_dtype dt = !strcmp(dtype, "f32") ? MOEJIT_DTYPE_F32 : !strcmp(dtype, "f16") ? MOEJIT_DTYPE_F16
                                                                                               : MOEJIT_DTYPE_BF16;
    if (strcmp(dtype, "f32") && strcmp(dtype, "f16") && strcmp(dtype, "bf16")) return usage();
    if (T < 1 || T > (1 << 20) || H < 1 || H > MOEJIT_MAX_HIDDEN || B < 1 || B > MOEJIT_ALIGN_MAX_BLOCK) {
        fprintf(stderr, "moe_layer: --tokens 1..1048576, --hidden 1..%d, --block a power of two in %d..%d\n",
                MOEJIT_MAX_HIDDEN, MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK);
        return 2;
    }
    L.route.dtype = dt;
    L.permute = (moejit_permute_spec){.hidden = (int32_t)H, .dtype = dt, .has_scale = 1};
    L.combine = (moejit_combine_spec){.hidden = (int32_t)H, .dtype = dt};
    L.T = T, L.H = (int)H, L.B = (int)B, L.E = L.route.num_experts, L.K = L.route.topk + L.route.shared_slots;
    L.align = (moejit_align_spec){.num_experts = L.E, .block_size = (int32_t)B};
    if (moejit_align_capacity(&L.align, L.T, L.K, &L.cap) != MOEJIT_OK) { /* also checks --block */
        fprintf(stderr, "moe_layer: %s\n", moejit_last_error(NULL));
        return 2;
    }
    moejit_kernel_desc descs[4] = {{.op = MOEJIT_OP_ROUTE, .route = L.route},
                                   {.op = MOEJIT_OP_ALIGN, .align = L.align},
                                   {.op = MOEJIT_OP_PERMUTE, .permute = L.permute},
                                   {.op = MOEJIT_OP_COMBINE, .combine = L.combine}};
    for (int i = 0; i < 4; i++) {
        char name[96];
        if (check("moejit_kernel_name", moejit_kernel_name(&descs[i], name, sizeof name), NULL)) return 2;
        printf("kernel %s\n", name);
    }

    /* inputs: fresh random logits, hidden states, selection bias and per-expert scales */
    const size_t es = elem_size(dt), W = (size_t)(L.T * L.K);
    host h = {0};
    h.logits = malloc((size_t)(L.T * L.E) * es);
    h.x = malloc((size_t)(L.T * L.H) * es);
    h.y = malloc((size_t)(L.cap * L.H) * es);
    h.ref_y = malloc((size_t)(L.cap * L.H) * es);
    h.out = malloc((size_t)(L.T * L.H) * es);
    h.ref_out = malloc((size_t)(L.T * L.H) * es);
    h.bias = malloc(sizeof(float) * (size_t)L.E);
    h.scale = malloc(sizeof(float) * (size_t)L.E);
    h.weights = malloc(sizeof(float) * W);
    h.ids = malloc(sizeof(int32_t) * W);
    h.sorted = malloc(sizeof(int32_t) * (size_t)L.cap);
    h.slot_of = malloc(sizeof(int32_t) * W);
    h.ref_sorted = malloc(sizeof(int32_t) * (size_t)L.cap);
    h.ref_slot_of = malloc(sizeof(int32_t) * W);
    srand(2024);
    for (int64_t i = 0; i < L.T * L.E; i++) store(h.logits, dt, i, 4.0f * ((float)rand() / (float)RAND_MAX - 0.5f));
    for (int64_t i = 0; i < L.T * L.H; i++) store(h.x, dt, i, 2.0f * ((float)rand() / (float)RAND_MAX - 0.5f));
    for (int e = 0; e < L.E; e++) {
        h.bias[e] = 0.1f * ((float)rand() / (float)RAND_MAX - 0.5f);
        h.scale[e] = 0.5f + (float)rand() / (float)RAND_MAX;
    }
    if (!L.route.has_bias) free(h.bias), h.bias = NULL;

    int rc, ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("no GPU here: running the layer with the C references only\n");
        rc = run_cpu(&L, &h);
    } else {
        moejit_ctx *ctx;
        if (check("moejit_open", moejit_open(NULL, &ctx), NULL)) return 1; /* configuration from the environment */
        rc = run_gpu(ctx, &L, &h);
        moejit_stats s;
        moejit_ctx_stats(ctx, &s);
        printf("kernels compiled %llu, loaded from the disk cache %llu\n", (unsigned long long)s.compiles,
               (unsigned long long)s.disk_hits);
        moejit_close(ctx);
    }
    free(h.logits), free(h.x), free(h.y), free(h.ref_y), free(h.out), free(h.ref_out), free(h.bias), free(h.scale);
    free(h.weights), free(h.ids), free(h.sorted), free(h.slot_of), free(h.ref_sorted), free(h.ref_slot_of);
    return rc;
}
