/* dispatch_layout test inputs and checks shared by test_dispatch_layout.c (the reference against a
 * naive computation) and test_gpu_dispatch_layout.c (the kernels against the reference): ids of
 * every dtype drawn fresh, with padding, ids past E and int64 ids that would alias an expert if
 * truncated; output buffers poisoned before every call and compared in full. */
#ifndef MOEJIT_TEST_DISPATCH_LAYOUT_CASES_H
#define MOEJIT_TEST_DISPATCH_LAYOUT_CASES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

/* Every output is poisoned with this byte first: a count, a 0 or a 1 never reads 0xabababab. */
#define DLT_POISON 0xab

/* How the ids of a batch are drawn. */
typedef enum {
    DLT_VALID,   /* every id an expert, K distinct a token when K <= E (as route gives) */
    DLT_PADDED,  /* about 1 in 4 not an expert: -1, E, E + j, other negatives, and for int64 ids
                  * 2^32·j + e and ±2^63 (an expert if truncated to 32 bits); int16 extremes */
    DLT_HOT,     /* every id one expert */
    DLT_REPEATS, /* a token repeats ids (counted once per rank, twice per expert), some -1 */
    DLT_NONE,    /* no id is an expert */
    DLT_KINDS
} dlt_kind;

static inline int dlt_id_bytes(moejit_index_dtype d) { return d == MOEJIT_INDEX_INT64 ? 8 : d == MOEJIT_INDEX_INT16 ? 2 : 4; }

static inline int64_t dlt_get(const void *ids, moejit_index_dtype d, int64_t i)
{
    if (d == MOEJIT_INDEX_INT64) return ((const int64_t *)ids)[i];
    if (d == MOEJIT_INDEX_INT16) return ((const int16_t *)ids)[i];
    return ((const int32_t *)ids)[i];
}

/* Store v (which the caller made fit the dtype) as id i. */
static inline void dlt_set(void *ids, moejit_index_dtype d, int64_t i, int64_t v)
{
    if (d == MOEJIT_INDEX_INT64) ((int64_t *)ids)[i] = v;
    else if (d == MOEJIT_INDEX_INT16) ((int16_t *)ids)[i] = (int16_t)v;
    else ((int32_t *)ids)[i] = (int32_t)v;
}

/* An id that is no expert and fits the dtype. */
static inline int64_t dlt_not_expert(mjt_rng *rng, moejit_index_dtype d, int E)
{
    const uint64_t r = mjt_next(rng);
    const int64_t e = (int64_t)((r >> 16) % (uint64_t)E);
    switch (r % 8) {
    case 0: case 1: case 2: return -1;
    case 3: return E;
    case 4: return E + 1 + (int64_t)((r >> 8) % 1000);
    case 5: return -2 - (int64_t)((r >> 8) % 1000);
    default:
        if (d == MOEJIT_INDEX_INT64) /* an expert's id in the low 32 bits */
            return r % 8 == 6 ? (int64_t)((uint64_t)1 << 32) * (int64_t)(1 + (r >> 40) % 4) + e
                              : (r >> 40) % 2 ? INT64_MIN + e : INT64_MAX - (int64_t)((r >> 8) % 3);
        if (d == MOEJIT_INDEX_INT16) return r % 8 == 6 ? INT16_MIN : INT16_MAX;
        return r % 8 == 6 ? INT32_MIN + e : INT32_MAX;
    }
}

/* T·K ids of a kind (malloc'ed, at least 16 bytes). */
static inline void *dlt_make_ids(mjt_rng *rng, dlt_kind kind, moejit_index_dtype d, int E, int64_t T, int K)
{
    const int64_t n = T * K;
    void *ids = malloc((size_t)(n ? n : 1) * (size_t)dlt_id_bytes(d) + 16);
    assert_non_null(ids);
    const int hot = (int)(mjt_next(rng) % (uint64_t)E);
    for (int64_t t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            const int64_t i = t * K + k;
            const uint64_t r = mjt_next(rng);
            int64_t v = (int64_t)(r % (uint64_t)E);
            switch (kind) {
            case DLT_VALID:
                if (K <= E) { /* distinct in the token */
                    for (int again = 1; again;) {
                        again = 0;
                        for (int j = 0; j < k; j++) again |= dlt_get(ids, d, t * K + j) == v;
                        if (again) v = (int64_t)(mjt_next(rng) % (uint64_t)E);
                    }
                }
                break;
            case DLT_PADDED:
                if (r % 4 == 0) v = dlt_not_expert(rng, d, E);
                break;
            case DLT_HOT: v = hot; break;
            case DLT_REPEATS:
                if (k > 0 && r % 3 == 0) v = dlt_get(ids, d, i - 1 - (int64_t)((r >> 8) % (uint64_t)k));
                else if (r % 7 == 1) v = -1;
                break;
            default: v = dlt_not_expert(rng, d, E); break;
            }
            dlt_set(ids, d, i, v);
        }
    return ids;
}

/* The four outputs, in host or device memory (argument struct order). */
enum { DLT_RANK = 1, DLT_NODE = 2, DLT_EXPERT = 4, DLT_ROWS = 8, DLT_ALL = 15 };
typedef struct dlt_bufs {
    void *buf[4];     /* tokens_per_rank, tokens_per_node, tokens_per_expert, is_token_in_rank */
    size_t bytes[4];
    size_t rows_at;   /* is_token_in_rank starts this many bytes into buf[3] (alignment tests) */
    int on_device;
} dlt_bufs;

static inline int dlt_nodes(const moejit_dispatch_layout_spec *s)
{
    const int rpn = s->ranks_per_node ? s->ranks_per_node : s->num_ranks < 8 ? s->num_ranks : 8;
    return s->num_ranks / rpn;
}

/* Buffers for T tokens, each a little larger than needed so that a write past an output shows. */
static inline dlt_bufs dlt_bufs_new(const moejit_dispatch_layout_spec *s, int64_t T, size_t rows_at, int on_device)
{
    dlt_bufs b = {.rows_at = rows_at, .on_device = on_device};
    b.bytes[0] = 4 * (size_t)s->num_ranks + 64;
    b.bytes[1] = 4 * (size_t)dlt_nodes(s) + 64;
    b.bytes[2] = 4 * (size_t)s->num_experts + 64;
    b.bytes[3] = (size_t)T * (size_t)s->num_ranks + rows_at + 64;
    for (int i = 0; i < 4; i++) {
        b.buf[i] = on_device ? mjt_dev_alloc(b.bytes[i]) : malloc(b.bytes[i]);
        assert_non_null(b.buf[i]);
    }
    return b;
}

static inline void dlt_bufs_poison(dlt_bufs *b)
{
    for (int i = 0; i < 4; i++) {
        if (b->on_device) mjt_dev_fill(b->buf[i], DLT_POISON, b->bytes[i]);
        else memset(b->buf[i], DLT_POISON, b->bytes[i]);
    }
}

static inline void dlt_bufs_free(dlt_bufs *b)
{
    for (int i = 0; i < 4; i++) {
        if (b->on_device) mjt_dev_free(b->buf[i]);
        else free(b->buf[i]);
    }
}

/* Arguments writing the outputs in `want` (the others NULL). */
static inline moejit_dispatch_layout_args dlt_args(const dlt_bufs *b, const void *ids, int64_t T, unsigned want)
{
    moejit_dispatch_layout_args a = {.ids = ids, .num_tokens = T};
    if (want & DLT_RANK) a.tokens_per_rank = b->buf[0];
    if (want & DLT_NODE) a.tokens_per_node = b->buf[1];
    if (want & DLT_EXPERT) a.tokens_per_expert = b->buf[2];
    if (want & DLT_ROWS) a.is_token_in_rank = (uint8_t *)b->buf[3] + b->rows_at;
    return a;
}

/* Every byte of two sets of buffers equal (outputs and the poison around them); fails naming the
 * output and the first differing element. */
static inline void dlt_compare(const dlt_bufs *got, const dlt_bufs *want, const char *what)
{
    static const char *const names[4] = {"tokens_per_rank", "tokens_per_node", "tokens_per_expert",
                                         "is_token_in_rank"};
    for (int i = 0; i < 4; i++) {
        unsigned char *g = malloc(got->bytes[i]), *w = malloc(want->bytes[i]);
        assert_non_null(g), assert_non_null(w);
        assert_int_equal(got->bytes[i], want->bytes[i]);
        if (got->on_device) mjt_d2h(g, got->buf[i], got->bytes[i]);
        else memcpy(g, got->buf[i], got->bytes[i]);
        if (want->on_device) mjt_d2h(w, want->buf[i], want->bytes[i]);
        else memcpy(w, want->buf[i], want->bytes[i]);
        for (size_t j = 0; j < got->bytes[i]; j++)
            if (g[j] != w[j]) {
                char where[96];
                if (i < 3) snprintf(where, sizeof where, "[%zu] (byte %zu)", j / 4, j);
                else if (j < got->rows_at) snprintf(where, sizeof where, "byte %zu before the rows", j);
                else snprintf(where, sizeof where, "byte %zu of the rows", j - got->rows_at);
                const size_t at = i < 3 ? j / 4 * 4 : j;
                int32_t gv = g[at], wv = w[at];
                if (i < 3) memcpy(&gv, g + at, 4), memcpy(&wv, w + at, 4);
                fail_msg("%s: %s %s: got %d (0x%x), want %d (0x%x)", what, names[i], where, gv, (unsigned)gv, wv,
                         (unsigned)wv);
            }
        free(g), free(w);
    }
}

#endif
