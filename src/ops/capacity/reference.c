/* The C reference of capacity (docs/DESIGN.md §2.7): the definition GPU results are checked
 * against — the routed slots of each expert ordered by the policy (weight, then flat index; or
 * flat index), the first C kept. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "moejit_reference.h"
#include "ops/capacity/capacity.h"

/* Slot i's id as the int64 it is (never truncated). */
static int64_t id_at(const void *ids, int dtype, int64_t i)
{
    switch (dtype) {
    case MOEJIT_INDEX_INT64: return ((const int64_t *)ids)[i];
    case MOEJIT_INDEX_INT16: return ((const int16_t *)ids)[i];
    default: return ((const int32_t *)ids)[i];
    }
}

static void id_drop(void *ids, int dtype, int64_t i)
{
    switch (dtype) {
    case MOEJIT_INDEX_INT64: ((int64_t *)ids)[i] = -1; break;
    case MOEJIT_INDEX_INT16: ((int16_t *)ids)[i] = -1; break;
    default: ((int32_t *)ids)[i] = -1; break;
    }
}

/* The weight order as an unsigned key (capacity.cuh and route.cuh's order_key): -0 is +0, NaN is
 * below every number. */
static uint32_t order_key(float f)
{
    f += 0.0f;
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 1u;
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

typedef struct slot {
    int32_t expert;
    uint32_t key; /* 0 under the position policy */
    int64_t flat; /* t·K + k */
    int64_t at;   /* t·(K+S) + k */
} slot;

/* Expert, then larger key first, then lower flat index. */
static int slot_order(const void *pa, const void *pb)
{
    const slot *a = pa, *b = pb;
    if (a->expert != b->expert) return a->expert < b->expert ? -1 : 1;
    if (a->key != b->key) return a->key > b->key ? -1 : 1;
    return a->flat < b->flat ? -1 : a->flat > b->flat;
}

static moejit_status reference_run(const mj_capacity_shape *s, const mj_capacity_params *p)
{
    const int E = s->experts, K = s->topk, W = s->topk + s->shared;
    const int64_t n = p->n;
    slot *v = malloc(sizeof *v * (size_t)(n ? n : 1));
    int32_t *count = calloc((size_t)E, sizeof *count);
    if (!v || !count) {
        free(v), free(count);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "capacity reference: out of memory");
    }
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t at = i / K * W + i % K;
        const int64_t id = id_at(p->ids, s->id_dtype, at);
        if (id < 0 || id >= E) continue; /* -1 or not an expert: left alone */
        count[id]++;
        v[m++] = (slot){.expert = (int32_t)id,
                        .key = s->policy == MOEJIT_DROP_PROBS ? order_key(p->weights[at]) : 0u,
                        .flat = i,
                        .at = at};
    }
    qsort(v, (size_t)m, sizeof *v, slot_order);
    int64_t rank = 0;
    for (int64_t j = 0; j < m; j++) {
        rank = j > 0 && v[j].expert == v[j - 1].expert ? rank + 1 : 0;
        if (rank >= p->capacity) {
            id_drop(p->ids, s->id_dtype, v[j].at);
            p->weights[v[j].at] = 0.0f;
        }
    }
    for (int e = 0; e < E; e++) {
        if (p->tokens_per_expert) p->tokens_per_expert[e] = count[e];
        if (p->kept) p->kept[e] = count[e] < p->capacity ? count[e] : p->capacity;
    }
    free(v), free(count);
    return MOEJIT_OK;
}

moejit_status moejit_capacity_reference(const moejit_capacity_spec *spec, const moejit_capacity_args *args)
{
    mj_error_clear();
    mj_capacity_shape s;
    mj_capacity_params p;
    int launch;
    moejit_status st = mj_capacity_check_call(spec, args, &s, &p, &launch); /* the launch's own checks */
    return st == MOEJIT_OK ? reference_run(&s, &p) : st;
}
