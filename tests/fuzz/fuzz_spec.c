/* Fuzz the spec validator and what a valid spec reaches without a GPU: kernel names, the packed
 * id, the shape description, code generation, the route C reference on a row or two of the input's
 * bytes as logits (NaN, infinities and subnormals included), route_backward's on such rows with
 * hostile ids, align's, dispatch_layout's and capacity's references on hostile ids, and
 * route_losses' on statistics of any value.
 *
 * Input: byte 0 picks the op (any op, or an invalid value), then the raw bytes of the spec struct;
 * what follows is logits and bias (route, route_align, route_backward) or ids (align, with its
 * first_expert and map; dispatch_layout: their references). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moejit.h"
#include "moejit_reference.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static moejit_ctx *g_ctx;

/* A broken invariant is a finding. */
#define check(ok)                                                                                          \
    do {                                                                                                   \
        if (!(ok)) {                                                                                       \
            fprintf(stderr, "fuzz_spec.c:%d: %s does not hold\n", __LINE__, #ok);                          \
            abort();                                                                                       \
        }                                                                                                  \
    } while (0)

/* An id array element of any moejit_index_dtype, widened. */
static int64_t index_at(const void *base, int dtype, int64_t i)
{
    if (dtype == MOEJIT_INDEX_INT64) return ((const int64_t *)base)[i];
    if (dtype == MOEJIT_INDEX_INT16) return ((const int16_t *)base)[i];
    return ((const int32_t *)base)[i];
}

/* route's reference on rows of the input's bytes, with every serving option's buffer filled from
 * them too (counts past T or negative, map entries and replica counts of any value, given ids of
 * any value): every id written is -1 or in [0, P + S), every weight finite. */
static void route_reference(const moejit_route_spec *spec, const uint8_t *rest, size_t rest_len)
{
    const int E = spec->num_experts, W = spec->topk + spec->shared_slots;
    const int R = spec->max_replicas > 0 ? spec->max_replicas : 0, P = R ? spec->num_physical_experts : E;
    const int elem = spec->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    const int64_t T = rest_len > 0 ? 1 + rest[0] % 2 : 1, stride = E + (rest_len > 1 ? rest[1] % 3 : 0);
    const size_t bytes = (size_t)(T * stride) * (size_t)elem;
#define RBYTE(j) (rest_len ? rest[(size_t)(j) % rest_len] : (uint8_t)(j))
    uint8_t *logits = malloc(bytes);
    float *bias = spec->has_bias ? malloc(sizeof(float) * (size_t)E) : NULL;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(T * W)), *logical = malloc(sizeof(int64_t) * (size_t)(T * W));
    float *w = malloc(sizeof(float) * (size_t)(T * W));
    int32_t *map = malloc(sizeof(int32_t) * (size_t)(R ? E * R : 1)), *replicas = malloc(sizeof(int32_t) * (size_t)E);
    int64_t *load = calloc((size_t)P + 1, sizeof(int64_t));
    if (!logits || (spec->has_bias && !bias) || !ids || !logical || !w || !map || !replicas || !load) abort();
    for (size_t i = 0; i < bytes; i++) logits[i] = RBYTE(i);
    for (int e = 0; bias && e < E; e++) {
        uint8_t b[4];
        for (int k = 0; k < 4; k++) b[k] = RBYTE(4 * e + k + 7);
        memcpy(&bias[e], b, 4);
    }
    for (int i = 0; i < E * R; i++) map[i] = (int32_t)(RBYTE(3 * i + 1) % (uint32_t)(P + 3)) - 1; /* -1 .. P+1 */
    for (int e = 0; e < E; e++) replicas[e] = (int32_t)(RBYTE(5 * e + 2) % (uint32_t)(R + 3)) - 1; /* clamped */
    for (int64_t i = 0; i < T * W; i++) { /* given ids: -1 .. E+1, in the spec's logical id type */
        const int64_t v = (int64_t)(RBYTE(7 * i + 3) % (uint32_t)(E + 3)) - 1;
        if (spec->logical_id_dtype == MOEJIT_INDEX_INT64) ((int64_t *)logical)[i] = v;
        else if (spec->logical_id_dtype == MOEJIT_INDEX_INT16) ((int16_t *)logical)[i] = (int16_t)v;
        else ((int32_t *)logical)[i] = (int32_t)v;
    }
    const int32_t count = (int32_t)(RBYTE(11) % 5) - 1; /* -1 .. 3: negative, short, past T */
#undef RBYTE
    /* the auxiliary losses' statistics (step 13): two sequences, the first one token long */
    uint64_t *sums = calloc(2 * (size_t)E, sizeof(uint64_t));
    int32_t *counts = calloc(2 * (size_t)E, sizeof(int32_t));
    float *lse = malloc(sizeof(float) * (size_t)T);
    if (!sums || !counts || !lse) abort();
    const int32_t off32[3] = {0, (int32_t)(T > 1), (int32_t)T};
    const int64_t off64[3] = {0, T > 1, T};
    const moejit_aux_stats aux = {
        .prob_sums = sums, .counts = counts, .lse = lse, .num_seqs = 2,
        .seq_offsets = spec->seq_offset_dtype == MOEJIT_INDEX_INT64 ? (const void *)off64 : (const void *)off32};
    const moejit_route_args a = {.logits = logits, .bias = bias, .ids = ids, .weights = w, .num_tokens = T,
                                 .row_stride = stride, .num_valid = &count, .logical_to_physical = map,
                                 .replica_count = replicas, .expert_load = load, .logical_ids = logical,
                                 .aux = spec->aux_stats ? &aux : NULL};
    check(moejit_route_reference(spec, &a) == MOEJIT_OK);
    for (int64_t i = 0; i < T * W; i++) {
        const int64_t id = index_at(ids, spec->id_dtype, i);
        check(id >= -1 && id < P + spec->shared_slots);
        check(isfinite(w[i]));
    }
    int64_t counted = 0; /* route's own picks, at most K a token */
    for (int i = 0; i < 2 * E; i++) counted += counts[i];
    check(counted >= 0 && counted <= T * spec->topk);
    free(logits), free(bias), free(ids), free(logical), free(w), free(map), free(replicas), free(load);
    free(sums), free(counts), free(lse);
}

/* route_backward's reference on rows of the input's bytes as logits (any value), ids of any value
 * (-1, out of range, repeated) and finite grad_weights: every gradient is finite. */
static void route_backward_reference(const moejit_route_backward_spec *spec, const uint8_t *rest, size_t rest_len)
{
    const moejit_route_spec *r = &spec->route;
    const int E = r->num_experts, W = r->topk + r->shared_slots, elem = r->dtype == MOEJIT_DTYPE_F32 ? 4 : 2;
    const int id_dtype = r->max_replicas ? r->logical_id_dtype : r->id_dtype, id_bytes = mj_index_dtype_bytes(id_dtype);
    const int64_t T = rest_len > 0 ? 1 + rest[0] % 2 : 1;
    const size_t bytes = (size_t)(T * E) * (size_t)elem;
#define BYTE(j) (rest_len ? rest[(size_t)(j) % rest_len] : (uint8_t)(j))
    uint8_t *logits = malloc(bytes), *ids = malloc((size_t)(T * W) * (size_t)id_bytes);
    float *gw = malloc(sizeof(float) * (size_t)(T * W)), *grad = malloc(sizeof(float) * (size_t)(T * E));
    if (!logits || !ids || !gw || !grad) abort();
    for (size_t i = 0; i < bytes; i++) logits[i] = BYTE(i + 1);
    for (int64_t i = 0; i < T * W; i++) {
        const int64_t v = (int64_t)(BYTE(3 * i + 2) % (uint32_t)(E + 3)) - 1; /* -1 .. E+1 */
        const int16_t v16 = (int16_t)v;
        const int32_t v32 = (int32_t)v;
        memcpy(ids + (size_t)i * (size_t)id_bytes,
               id_bytes == 8 ? (const void *)&v : id_bytes == 2 ? (const void *)&v16 : (const void *)&v32,
               (size_t)id_bytes);
        gw[i] = (float)(int8_t)BYTE(5 * i + 3) / 16.0f;
    }
#undef BYTE
    const moejit_route_backward_args a = {.logits = logits, .ids = ids, .grad_weights = gw, .grad_logits = grad,
                                          .num_tokens = T};
    check(moejit_route_backward_reference(spec, &a) == MOEJIT_OK);
    for (int64_t i = 0; i < T * E; i++) check(isfinite(grad[i]));
    free(logits), free(ids), free(gw), free(grad);
}

/* align's reference on hostile ids (negative, out of range, repeated, past int32, of the spec's
 * id dtype) through first_expert or an expert map with hostile entries: the maps stay consistent. */
static void align_reference(const moejit_align_spec *spec, const uint8_t *rest, size_t rest_len)
{
    const int64_t T = rest_len > 0 ? rest[0] % 64 : 1;
    const int32_t K = rest_len > 1 ? 1 + rest[1] % 8 : 1, E = spec->num_experts, Eg = spec->global_experts;
    if (Eg > 65536) return; /* a map that large costs more time than it finds */
#define BYTE(j) (rest_len ? rest[(size_t)(j) % rest_len] : 0)
    const int elem = mj_index_dtype_bytes(spec->id_dtype);
    const int32_t first = Eg ? 0 : (int8_t)BYTE(2) * 1000; /* ±128000: the int16 range and beyond */
    int64_t cap = 0;
    const moejit_status cap_st = moejit_align_capacity(spec, T, K, &cap);
    const int32_t C = spec->expert_capacity, B = spec->block_size;
    const int64_t rows_per_expert = C > 0 ? ((int64_t)C + B - 1) / B * B : 0;
    if (C > 0) { /* pad to capacity: E ranges of round_up(C, B) rows, fewer than T·K when ids drop */
        if (cap_st != MOEJIT_OK) return; /* positions past int32: refused, as test_align checks */
        check(cap == (int64_t)E * rows_per_expert);
        if (cap > (1 << 22)) return;     /* a capacity this large costs more time than it finds */
    } else {
        check(cap_st == MOEJIT_OK && cap >= T * K);
    }
    uint8_t *ids = malloc((size_t)elem * (size_t)(T * K) + 8);
    int32_t *map = malloc(sizeof(int32_t) * (size_t)(Eg + 1));
    int32_t *counts = malloc(sizeof(int32_t) * (size_t)E), *offsets = malloc(sizeof(int32_t) * (size_t)(E + 1));
    int32_t *sorted = malloc(sizeof(int32_t) * (size_t)(cap + 1)), *blocks = malloc(sizeof(int32_t) * (size_t)(cap / spec->block_size + 1));
    int32_t *slot_of = malloc(sizeof(int32_t) * (size_t)(T * K + 1)), total = -1;
    if (!ids || !map || !counts || !offsets || !sorted || !blocks || !slot_of) abort();
    for (int32_t g = 0; g < Eg; g++) map[g] = (int32_t)(BYTE(g + 3) % (uint32_t)(E + 3)) - 2; /* -2, -1, locals, E */
    const int64_t width = Eg ? Eg : E, base = Eg ? 0 : first;
    for (int64_t i = 0; i < T * K; i++) {
        uint64_t raw = 0;
        for (int b = 0; b < 8; b++) raw = raw << 8 | BYTE(8 * i + b + 3);
        /* mostly in range (or just outside), the rest raw bytes: any value of the type */
        const int64_t v = (i % 3) ? base + (int64_t)(raw % (uint64_t)(width + 2)) - 1 : (int64_t)raw;
        const int16_t v16 = (int16_t)v;
        const int32_t v32 = (int32_t)v;
        memcpy(ids + (size_t)elem * (size_t)i, elem == 8 ? (const void *)&v : elem == 2 ? (const void *)&v16 : (const void *)&v32,
               (size_t)elem);
    }
#undef BYTE
    moejit_align_args a = {.ids = ids, .num_tokens = T, .topk = K, .first_expert = first, .expert_map = Eg ? map : NULL,
                           .out = {.counts = counts, .offsets = offsets, .sorted_ids = sorted, .sorted_capacity = cap,
                                   .block_expert = blocks, .total_padded = &total, .slot_of = slot_of}};
    check(moejit_align_reference(spec, &a) == MOEJIT_OK);
    check(offsets[0] == 0 && offsets[E] == total && total <= cap && total % spec->block_size == 0);
    for (int e = 0; e < E; e++) check(offsets[e + 1] >= offsets[e] + counts[e]);
    for (int e = 0; C > 0 && e < E; e++) check(counts[e] <= C && offsets[e] == (int64_t)e * rows_per_expert);
    for (int64_t i = 0; i < T * K; i++) check(slot_of[i] == -1 || (slot_of[i] >= 0 && slot_of[i] < total));
    free(ids), free(map), free(counts), free(offsets), free(sorted), free(blocks), free(slot_of);
}

/* capacity's reference on hostile ids (any value of the spec's type) and weights (NaN, infinities,
 * -0 included), a capacity from the input: dropped slots are -1 with weight 0, kept ones unchanged,
 * shared columns untouched, at most C kept per expert. */
static void capacity_reference(const moejit_capacity_spec *spec, const uint8_t *rest, size_t rest_len)
{
    const int64_t T = rest_len > 0 ? rest[0] % 40 : 1;
    const int K = spec->topk, W = spec->topk + spec->shared_slots, E = spec->num_experts;
    const int elem = mj_index_dtype_bytes(spec->id_dtype);
#define CBYTE(j) (rest_len ? rest[(size_t)(j) % rest_len] : (uint8_t)(j))
    const int32_t C = 1 + (int32_t)(CBYTE(1) % (uint32_t)(T * K + 2));
    uint8_t *ids = malloc((size_t)elem * (size_t)(T * W) + 8), *ids0 = malloc((size_t)elem * (size_t)(T * W) + 8);
    float *w = malloc(sizeof(float) * (size_t)(T * W) + 4), *w0 = malloc(sizeof(float) * (size_t)(T * W) + 4);
    int32_t *before = malloc(sizeof(int32_t) * (size_t)E), *kept = malloc(sizeof(int32_t) * (size_t)E);
    if (!ids || !ids0 || !w || !w0 || !before || !kept) abort();
    for (int64_t i = 0; i < T * W; i++) {
        const int64_t v = (i % 4) ? (int64_t)(CBYTE(3 * i + 2) % (uint32_t)(E + 3)) - 1 : (int64_t)(int8_t)CBYTE(i) * ((int64_t)1 << 40);
        const int16_t v16 = (int16_t)v;
        const int32_t v32 = (int32_t)v;
        memcpy(ids + (size_t)elem * (size_t)i, elem == 8 ? (const void *)&v : elem == 2 ? (const void *)&v16 : (const void *)&v32,
               (size_t)elem);
        uint8_t b[4];
        for (int k = 0; k < 4; k++) b[k] = CBYTE(4 * i + k + 5);
        memcpy(&w[i], b, 4);
    }
#undef CBYTE
    memcpy(ids0, ids, (size_t)elem * (size_t)(T * W));
    memcpy(w0, w, sizeof(float) * (size_t)(T * W));
    const moejit_capacity_args a = {.ids = ids, .weights = w, .num_tokens = T, .capacity = C,
                                    .tokens_per_expert = before, .kept = kept};
    check(moejit_capacity_reference(spec, &a) == MOEJIT_OK);
    for (int e = 0; e < E; e++) check(kept[e] >= 0 && kept[e] <= C && kept[e] <= before[e]);
    for (int64_t i = 0; i < T * W; i++) {
        const int64_t id = index_at(ids, spec->id_dtype, i), id0 = index_at(ids0, spec->id_dtype, i);
        const int routed = i % W < K;
        if (id == id0) check(memcmp(&w[i], &w0[i], 4) == 0);
        else check(routed && id == -1 && w[i] == 0.0f && id0 >= 0 && id0 < E);
    }
    free(ids), free(ids0), free(w), free(w0), free(before), free(kept);
}

/* route_losses' reference on statistics of any value (sums near 2^64, negative counts, offsets
 * that decrease or pass T, lse of any float): it returns, and never reads out of bounds. */
static void route_losses_reference(const moejit_route_losses_spec *spec, const uint8_t *rest, size_t rest_len)
{
    const int E = spec->num_experts;
    const int64_t T = rest_len > 0 ? rest[0] % 50 : 0, S = rest_len > 1 ? 1 + rest[1] % 4 : 1;
    const int64_t N = (spec->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? S : 1;
#define LBYTE(j) (rest_len ? rest[(size_t)(j) % rest_len] : (uint8_t)(j))
    uint64_t *sums = malloc(sizeof(uint64_t) * (size_t)(N * E));
    int32_t *counts = malloc(sizeof(int32_t) * (size_t)(N * E));
    float *lse = malloc(sizeof(float) * (size_t)(T + 1)), losses[3];
    int64_t off64[5];
    int32_t off32[5];
    if (!sums || !counts || !lse) abort();
    for (int64_t i = 0; i < N * E; i++) {
        uint64_t v = 0;
        for (int b = 0; b < 8; b++) v = v << 8 | LBYTE(8 * i + b + 2);
        sums[i] = v;
        counts[i] = (int32_t)(int8_t)LBYTE(i + 3);
    }
    for (int64_t t = 0; t < T; t++) {
        uint8_t b[4];
        for (int k = 0; k < 4; k++) b[k] = LBYTE(4 * t + k + 11);
        memcpy(&lse[t], b, 4);
    }
    for (int q = 0; q <= S; q++) off64[q] = off32[q] = (int32_t)(int8_t)LBYTE(q + 7);
#undef LBYTE
    const moejit_aux_stats aux = {
        .prob_sums = sums, .counts = counts, .lse = lse, .num_seqs = S,
        .seq_offsets = spec->seq_offset_dtype == MOEJIT_INDEX_INT64 ? (const void *)off64 : (const void *)off32};
    const moejit_route_losses_args a = {.aux = &aux, .losses = losses, .num_tokens = T};
    const moejit_status st = moejit_route_losses_reference(spec, &a);
    check(st == MOEJIT_OK || st == MOEJIT_ERR_INVALID_ARGUMENT);
    free(sums), free(counts), free(lse);
}

/* dispatch_layout's reference on hostile ids of the spec's dtype: every row byte 0 or 1, every count
 * the sum of what it counts. */
static void dispatch_layout_reference(const moejit_dispatch_layout_spec *spec, const uint8_t *rest, size_t rest_len)
{
    const int64_t T = rest_len > 0 ? rest[0] % 40 : 1;
    const int K = spec->topk, E = spec->num_experts, R = spec->num_ranks;
    const int rpn = spec->ranks_per_node ? spec->ranks_per_node : R < 8 ? R : 8, N = R / rpn;
    const size_t bytes = spec->id_dtype == MOEJIT_INDEX_INT64 ? 8 : spec->id_dtype == MOEJIT_INDEX_INT16 ? 2 : 4;
    uint8_t *ids = malloc(bytes * (size_t)(T * K) + 1), *rows = malloc((size_t)(T * R) + 1);
    int32_t *ranks = malloc(sizeof(int32_t) * (size_t)R), *nodes = malloc(sizeof(int32_t) * (size_t)N),
            *experts = malloc(sizeof(int32_t) * (size_t)E);
    if (!ids || !rows || !ranks || !nodes || !experts) abort();
    for (size_t i = 0; i < bytes * (size_t)(T * K); i++) ids[i] = rest_len > 1 ? rest[1 + i % (rest_len - 1)] : (uint8_t)i;
    const moejit_dispatch_layout_args a = {.ids = ids, .num_tokens = T, .tokens_per_rank = ranks,
                                           .tokens_per_node = nodes, .tokens_per_expert = experts,
                                           .is_token_in_rank = rows};
    check(moejit_dispatch_layout_reference(spec, &a) == MOEJIT_OK);
    int64_t in_rows = 0, sum_ranks = 0, sum_nodes = 0, sum_experts = 0;
    for (int64_t i = 0; i < T * R; i++) {
        check(rows[i] <= 1);
        in_rows += rows[i];
    }
    for (int r = 0; r < R; r++) {
        check(ranks[r] >= 0 && ranks[r] <= T);
        sum_ranks += ranks[r];
    }
    for (int n = 0; n < N; n++) {
        check(nodes[n] >= 0 && nodes[n] <= T);
        sum_nodes += nodes[n];
    }
    for (int e = 0; e < E; e++) {
        check(experts[e] >= 0);
        sum_experts += experts[e];
    }
    check(in_rows == sum_ranks && sum_nodes <= sum_ranks && sum_ranks <= sum_experts && sum_experts <= T * K);
    free(ids), free(rows), free(ranks), free(nodes), free(experts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (!g_ctx) {
        moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF, .log_level = MOEJIT_LOG_SILENT};
        if (moejit_open(&cfg, &g_ctx) != MOEJIT_OK) {
            fprintf(stderr, "moejit_open: %s\n", moejit_last_error(NULL));
            abort();
        }
    }
    static const int ops[32] = {MOEJIT_OP_ROUTE,       MOEJIT_OP_ROUTE,       MOEJIT_OP_ROUTE,     MOEJIT_OP_PERMUTE,
                                MOEJIT_OP_COMBINE,     0,                     12,                  -7,
                                MOEJIT_OP_ALIGN,       MOEJIT_OP_ALIGN,       MOEJIT_OP_ROUTE_ALIGN, MOEJIT_OP_ROUTE_ALIGN,
                                MOEJIT_OP_MX_SCALES,   MOEJIT_OP_MX_SCALES,   MOEJIT_OP_ROUTE_BACKWARD, 5,
                                MOEJIT_OP_CAPACITY,    MOEJIT_OP_CAPACITY,    MOEJIT_OP_ROUTE_LOSSES, MOEJIT_OP_ROUTE_LOSSES,
                                MOEJIT_OP_ROUTE,       MOEJIT_OP_ROUTE,       MOEJIT_OP_ROUTE_BACKWARD, MOEJIT_OP_ALIGN,
                                MOEJIT_OP_PERMUTE,     MOEJIT_OP_COMBINE,     MOEJIT_OP_DISPATCH_LAYOUT, 13,
                                MOEJIT_OP_CAPACITY,    MOEJIT_OP_ROUTE_LOSSES, 17,                 -1};
    moejit_kernel_desc d;
    memset(&d, 0, sizeof d);
    d.op = (moejit_op)ops[data[0] & 31];
    const size_t room = sizeof d - offsetof(moejit_kernel_desc, route);
    const size_t n = size - 1 < room ? size - 1 : room;
    memcpy(&d.route, data + 1, n);
    const uint8_t *rest = data + 1 + n;
    const size_t rest_len = size - 1 - n;

    const moejit_status st = moejit_validate(&d);
    char name[128], tiny[4];
    const moejit_status named = moejit_kernel_name(&d, name, sizeof name);
    (void)moejit_kernel_name(&d, tiny, sizeof tiny);
    if (st != MOEJIT_OK) {
        check(st == MOEJIT_ERR_INVALID_SPEC || st == MOEJIT_ERR_UNSUPPORTED || st == MOEJIT_ERR_INVALID_ARGUMENT);
        check(moejit_last_error(NULL)[0] != '\0'); /* every rejection says why */
        return 0;
    }
    check(named == MOEJIT_OK && strlen(name) < sizeof name);
    mj_kernel_id id;
    check(mj_kernel_id_from_desc(&d, &id) == MOEJIT_OK);
    char shape[512];
    mj_kernel_describe(&id, shape, sizeof shape);
    mj_kernel_describe(&id, shape, 3);
    /* Code generation for every valid spec (bounded: small E keeps the input cheap to run) */
    char *src = NULL;
    size_t len = 0;
    check(moejit_source(g_ctx, &d, &src, &len) == MOEJIT_OK && src && strlen(src) == len);
    check(strstr(src, name) != NULL);
    moejit_free(src);
    if (d.op == MOEJIT_OP_ROUTE && d.route.num_experts <= 1024) route_reference(&d.route, rest, rest_len);
    if (d.op == MOEJIT_OP_ROUTE_ALIGN && d.route_align.route.num_experts <= 1024)
        route_reference(&d.route_align.route, rest, rest_len);
    if (d.op == MOEJIT_OP_ROUTE_BACKWARD && d.route_backward.route.num_experts <= 1024)
        route_backward_reference(&d.route_backward, rest, rest_len);
    if (d.op == MOEJIT_OP_ALIGN) align_reference(&d.align, rest, rest_len);
    if (d.op == MOEJIT_OP_DISPATCH_LAYOUT) dispatch_layout_reference(&d.dispatch_layout, rest, rest_len);
    if (d.op == MOEJIT_OP_CAPACITY) capacity_reference(&d.capacity, rest, rest_len);
    if (d.op == MOEJIT_OP_ROUTE_LOSSES) route_losses_reference(&d.route_losses, rest, rest_len);
    return 0;
}
