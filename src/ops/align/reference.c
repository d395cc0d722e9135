/* The C reference of align (docs/DESIGN.md §2.2): the definition GPU results are checked against,
 * written as the plain counting sort it is. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "moejit_reference.h"
#include "ops/align/align.h"

/* Id i of the batch, whatever its type, as the int64 it is (never truncated). */
static int64_t id_at(const void *ids, int id_dtype, int i)
{
    switch (id_dtype) {
    case MOEJIT_INDEX_INT64: return ((const int64_t *)ids)[i];
    case MOEJIT_INDEX_INT16: return ((const int16_t *)ids)[i];
    default: return ((const int32_t *)ids)[i];
    }
}

/* The local expert of an id, or -1 when it is dropped (moejit.h, Operation 2). */
static int local_expert(const mj_align_shape *s, const mj_align_params *p, int64_t id)
{
    if (s->global_experts) {
        const int32_t e = id >= 0 && id < s->global_experts ? p->expert_map[id] : -1;
        return e >= 0 && e < s->experts ? e : -1;
    }
    if (id < p->first_expert) return -1;
    /* id - first_expert, exact in uint64 once id >= first_expert (int64 could overflow) */
    const uint64_t e = (uint64_t)id - (uint64_t)(int64_t)p->first_expert;
    return e < (uint64_t)s->experts ? (int)e : -1;
}

moejit_status mj_align_reference_run(const mj_align_shape *s, const mj_align_params *p)
{
    const int E = s->experts, B = s->block_size, N = p->n;
    int32_t *counts = calloc((size_t)E, sizeof *counts), *off = malloc(sizeof *off * (size_t)(E + 1)),
            *next = malloc(sizeof *next * (size_t)E);
    if (!counts || !off || !next) {
        free(counts), free(off), free(next);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "align reference: out of memory");
    }
    /* Counts of the local experts, then offsets: each expert's rows padded to a multiple of B. */
    for (int i = 0; i < N; i++) {
        const int e = local_expert(s, p, id_at(p->ids, s->id_dtype, i));
        if (e >= 0) counts[e]++;
    }
    /* Pad to capacity: C rows at most an expert (the first C by flat index), every range
     * round_up(C, B) rows whatever the counts. */
    const int C = p->expert_capacity;
    if (C > 0)
        for (int e = 0; e < E; e++) counts[e] = counts[e] < C ? counts[e] : C;
    off[0] = 0;
    for (int e = 0; e < E; e++) off[e + 1] = off[e] + ((C > 0 ? C : counts[e]) + B - 1) / B * B;
    const int total = off[E];
    /* Flat indices in ascending order: each goes to the next free row of its expert. */
    memcpy(next, off, sizeof *next * (size_t)E);
    for (int i = 0; i < N; i++) {
        const int e = local_expert(s, p, id_at(p->ids, s->id_dtype, i));
        const int slot = e >= 0 && next[e] < off[e] + counts[e] ? next[e]++ : -1;
        if (slot >= 0 && p->sorted_ids) p->sorted_ids[slot] = i;
        if (p->slot_of) p->slot_of[i] = slot;
    }
    for (int e = 0; e < E; e++) {
        if (p->sorted_ids)
            for (int q = off[e] + counts[e]; q < off[e + 1]; q++) p->sorted_ids[q] = N;
        if (p->block_expert)
            for (int b = off[e] / B; b < off[e + 1] / B; b++) p->block_expert[b] = e;
        if (p->counts) p->counts[e] = counts[e];
        if (p->offsets) p->offsets[e] = off[e];
    }
    if (p->block_expert)
        for (int b = total / B; b < p->capacity / B; b++) p->block_expert[b] = -1;
    if (p->offsets) p->offsets[E] = total;
    if (p->total_padded) *p->total_padded = total;
    free(counts), free(off), free(next);
    return MOEJIT_OK;
}

moejit_status moejit_align_reference(const moejit_align_spec *spec, const moejit_align_args *args)
{
    mj_error_clear();
    mj_align_shape a;
    mj_align_layout l;
    mj_align_params p;
    moejit_status st = mj_align_check_call(spec, args, 0, MJ_ALIGN_PATH_AUTO, &a, &l, &p); /* the launch's own checks */
    return st == MOEJIT_OK ? mj_align_reference_run(&a, &p) : st;
}
