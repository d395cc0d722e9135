/* capacity test inputs and checks shared by test_capacity.c (the reference against a brute force
 * written here) and test_gpu_capacity.c (the kernel against the reference): route-like ids and
 * weights of every id dtype drawn fresh, with ties, hot experts, -1 and ids that are no expert,
 * non-finite and signed-zero weights; the whole arrays and the counts compared. */
#ifndef MOEJIT_TEST_CAPACITY_CASES_H
#define MOEJIT_TEST_CAPACITY_CASES_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

/* Counts are poisoned with this byte first: no count reads 0xcdcdcdcd. */
#define CAPT_POISON 0xcd

/* How a batch is drawn. */
typedef enum {
    CAPT_ROUTE,   /* K distinct experts a row when K <= E (as route gives), skewed to a few hot ones,
                   * distinct random weights in (0, 1) */
    CAPT_TIES,    /* the same ids, weights from {1, 0.5, 0.25, 0, -0}: most comparisons are ties */
    CAPT_HOT,     /* every routed id one of two experts, weights from a few values */
    CAPT_HOSTILE, /* about 1 in 4 ids -1 or no expert (E, E + j, negatives, int64 ids that alias an
                   * expert if truncated), repeated ids in a row, NaN, ±inf and -0 weights */
    CAPT_KINDS
} capt_kind;

static inline int capt_id_bytes(moejit_index_dtype d) { return d == MOEJIT_INDEX_INT64 ? 8 : d == MOEJIT_INDEX_INT16 ? 2 : 4; }

static inline void capt_set(void *ids, moejit_index_dtype d, int64_t i, int64_t v)
{
    if (d == MOEJIT_INDEX_INT64) ((int64_t *)ids)[i] = v;
    else if (d == MOEJIT_INDEX_INT16) ((int16_t *)ids)[i] = (int16_t)v;
    else ((int32_t *)ids)[i] = (int32_t)v;
}

/* An expert skewed towards the low ids (u² spreads the load unevenly, so some overflow). */
static inline int64_t capt_skewed(mjt_rng *rng, int E)
{
    const double u = mjt_uniform(rng);
    const int64_t e = (int64_t)(u * u * E);
    return e < E ? e : E - 1;
}

static inline int64_t capt_not_expert(mjt_rng *rng, moejit_index_dtype d, int E)
{
    const uint64_t r = mjt_next(rng);
    const int64_t e = (int64_t)((r >> 16) % (uint64_t)E);
    switch (r % 6) {
    case 0: case 1: return -1;
    case 2: return E + (int64_t)((r >> 8) % 100);
    case 3: return -2 - (int64_t)((r >> 8) % 100);
    default:
        if (d == MOEJIT_INDEX_INT64) return (int64_t)((uint64_t)1 << 32) * (int64_t)(1 + (r >> 40) % 4) + e;
        if (d == MOEJIT_INDEX_INT16) return INT16_MIN;
        return INT32_MIN + e;
    }
}

/* ids [T, K+S] (malloc'ed, *ids) and weights [T, K+S] (*w) for spec s: shared column j holds
 * E + j and weight 1, as route writes them. */
static inline void capt_make(mjt_rng *rng, capt_kind kind, const moejit_capacity_spec *s, int64_t T, void **ids,
                             float **w)
{
    const int E = s->num_experts, K = s->topk, W = s->topk + s->shared_slots;
    const size_t cells = (size_t)(T * W);
    *ids = malloc(cells * (size_t)capt_id_bytes(s->id_dtype) + 8);
    *w = malloc(cells * sizeof(float) + 8);
    if (!*ids || !*w) fail_msg("out of memory");
    static const float tie_values[] = {1.0f, 0.5f, 0.25f, 0.0f, -0.0f};
    static const float hostile_values[] = {0.5f, 0.25f, -0.0f, 0.0f, INFINITY, -INFINITY, NAN, 0.75f, -1.0f};
    int64_t row[64 + 64];
    for (int64_t t = 0; t < T; t++) {
        for (int k = 0; k < K; k++) {
            int64_t e;
            int fresh;
            int tries = 0;
            do { /* distinct a row where E allows it (route's rows), except in the hostile kind */
                e = kind == CAPT_HOT ? (int64_t)(mjt_next(rng) % 2) * (E - 1) : capt_skewed(rng, E);
                fresh = 1;
                for (int j = 0; j < k; j++) fresh &= row[j] != e;
            } while (!fresh && K <= E && kind != CAPT_HOSTILE && kind != CAPT_HOT && ++tries < 1000);
            if (kind == CAPT_HOSTILE && mjt_next(rng) % 4 == 0) e = capt_not_expert(rng, s->id_dtype, E);
            if (kind == CAPT_HOSTILE && k > 0 && mjt_next(rng) % 8 == 0) e = row[k - 1]; /* a repeat */
            row[k] = e;
            float v;
            switch (kind) {
            case CAPT_TIES: v = tie_values[mjt_next(rng) % 5]; break;
            case CAPT_HOT: v = tie_values[mjt_next(rng) % 3] * (float)(1 + mjt_next(rng) % 3); break;
            case CAPT_HOSTILE:
                v = mjt_next(rng) % 3 ? (float)mjt_uniform(rng) : hostile_values[mjt_next(rng) % 9];
                break;
            default: v = (float)mjt_uniform(rng); break;
            }
            capt_set(*ids, s->id_dtype, t * W + k, e);
            (*w)[t * W + k] = v;
        }
        for (int j = 0; j < s->shared_slots; j++) {
            capt_set(*ids, s->id_dtype, t * W + K + j, E + j);
            (*w)[t * W + K + j] = 1.0f;
        }
    }
}

/* a beats b in the probs order, as numbers: larger first (-0 equals +0, NaN below every number,
 * two NaN equal), then the lower flat index. Written without the library's keys. */
static inline int capt_beats(float a, int64_t ia, float b, int64_t ib)
{
    const int na = isnan(a), nb = isnan(b);
    if (na != nb) return nb; /* a number beats NaN */
    if (!na && a != b) return a > b;
    return ia < ib;
}

/* The definition by brute force: slot (t, k) of expert e stays exactly when fewer than C slots of
 * e beat it (by probs, or by position: a lower flat index). Writes the expected ids, weights and
 * counts (cnt[E], kept[E]) from the inputs. O(m²) per expert. */
static inline void capt_brute(const moejit_capacity_spec *s, int64_t T, int64_t C, const void *ids_in,
                              const float *w_in, void *ids_out, float *w_out, int32_t *cnt, int32_t *kept)
{
    const int E = s->num_experts, K = s->topk, W = s->topk + s->shared_slots;
    const size_t cells = (size_t)(T * W);
    memcpy(ids_out, ids_in, cells * (size_t)capt_id_bytes(s->id_dtype));
    memcpy(w_out, w_in, cells * sizeof(float));
    for (int e = 0; e < E; e++) cnt[e] = 0;
    for (int64_t i = 0; i < T * K; i++) {
        const int64_t a = i / K * W + i % K;
        const int64_t e = mjt_index_get(ids_in, s->id_dtype, a);
        if (e < 0 || e >= E) continue;
        cnt[e]++;
        int64_t beaten_by = 0;
        for (int64_t j = 0; j < T * K; j++) {
            const int64_t b = j / K * W + j % K;
            if (j == i || mjt_index_get(ids_in, s->id_dtype, b) != e) continue;
            beaten_by += s->policy == MOEJIT_DROP_POSITION ? j < i : capt_beats(w_in[b], j, w_in[a], i);
        }
        if (beaten_by >= C) {
            capt_set(ids_out, s->id_dtype, a, -1);
            w_out[a] = 0.0f;
        }
    }
    for (int e = 0; e < E; e++) kept[e] = cnt[e] < C ? cnt[e] : (int32_t)C;
}

/* Two [T, K+S] results equal bit for bit (weights compared as bits: -0 is not +0 here, and the
 * weights kept must be the very bits given). */
static inline void capt_compare(const moejit_capacity_spec *s, int64_t T, const void *ids, const float *w,
                                const void *want_ids, const float *want_w, const char *what)
{
    const int W = s->topk + s->shared_slots;
    for (int64_t i = 0; i < T * W; i++) {
        const int64_t a = mjt_index_get(ids, s->id_dtype, i), b = mjt_index_get(want_ids, s->id_dtype, i);
        uint32_t x, y;
        memcpy(&x, w + i, 4);
        memcpy(&y, want_w + i, 4);
        if (a != b || x != y)
            fail_msg("%s: slot (%lld, %lld): id %lld weight %a (0x%08x), wanted id %lld weight %a (0x%08x)", what,
                     (long long)(i / W), (long long)(i % W), (long long)a, (double)w[i], x, (long long)b,
                     (double)want_w[i], y);
    }
}

static inline void capt_compare_counts(int E, const int32_t *got, const int32_t *want, const char *name,
                                       const char *what)
{
    for (int e = 0; e < E; e++)
        if (got[e] != want[e]) fail_msg("%s: %s[%d] = %d, wanted %d", what, name, e, got[e], want[e]);
}

/* ---- pad to capacity: align's spec.expert_capacity ------------------------------------------- */

/* align's maps with expert_capacity = C by brute force, for ids [N] of spec->id_dtype read as
 * local experts (no map, first_expert 0): R = round_up(C, B) rows an expert, the first C flat
 * indices of each expert in order, padding N, the rest dropped. Writes b (mjt_align_bufs order:
 * counts, offsets, sorted_ids, block_expert, total_padded, slot_of; sorted_ids of E·R entries). */
static inline void capt_align_brute(const moejit_align_spec *spec, const void *ids, int64_t N, mjt_align_bufs *b)
{
    const int E = spec->num_experts, B = spec->block_size, C = spec->expert_capacity;
    const int R = (C + B - 1) / B * B;
    int32_t *counts = b->buf[0], *offsets = b->buf[1], *sorted = b->buf[2], *blocks = b->buf[3], *total = b->buf[4],
            *slot_of = b->buf[5];
    for (int e = 0; e < E; e++) counts[e] = 0, offsets[e] = e * R;
    offsets[E] = E * R;
    *total = E * R;
    for (int64_t r = 0; r < (int64_t)E * R; r++) sorted[r] = (int32_t)N;
    for (int64_t q = 0; q < (int64_t)E * R / B; q++) blocks[q] = (int32_t)(q * B / R);
    for (int64_t i = 0; i < N; i++) {
        const int64_t e = mjt_index_get(ids, spec->id_dtype, i);
        slot_of[i] = -1;
        if (e < 0 || e >= E || counts[e] >= C) continue;
        slot_of[i] = (int32_t)(e * R + counts[e]);
        sorted[e * R + counts[e]++] = (int32_t)i;
    }
}

/* Two host sets of align outputs equal, int for int. */
static inline void capt_align_compare_host(const mjt_align_bufs *got, const mjt_align_bufs *want, const char *what)
{
    static const char *const names[6] = {"counts", "offsets", "sorted_ids", "block_expert", "total_padded", "slot_of"};
    for (int b = 0; b < 6; b++)
        for (size_t i = 0; i < want->len[b]; i++)
            if (got->buf[b][i] != want->buf[b][i])
                fail_msg("%s: %s[%zu] = %d, wanted %d", what, names[b], i, got->buf[b][i], want->buf[b][i]);
}

#endif
