/* The C reference of dispatch_layout (docs/DESIGN.md §2.6): the definition GPU results are checked
 * against, token by token. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "moejit_reference.h"
#include "ops/dispatch_layout/dispatch_layout.h"

/* Id (t, k) as the int64 it is (int16 and int32 sign-extended): never truncated, so an int64 id of
 * 2^32 + 3 is not expert 3. */
static int64_t id_at(const void *ids, int dtype, int64_t i)
{
    switch (dtype) {
    case MOEJIT_INDEX_INT64: return ((const int64_t *)ids)[i];
    case MOEJIT_INDEX_INT16: return ((const int16_t *)ids)[i];
    default: return ((const int32_t *)ids)[i];
    }
}

static moejit_status reference_run(const mj_dispatch_layout_shape *s, const mj_dispatch_layout_params *p)
{
    const int E = s->experts, R = s->ranks, K = s->topk, N = mj_dl_nodes(s);
    const int per_rank = E / R, per_node = E / N;
    const int64_t T = p->num_tokens;
    int32_t *per_expert = calloc((size_t)E, sizeof *per_expert), *ranks = calloc((size_t)R, sizeof *ranks),
            *nodes = calloc((size_t)N, sizeof *nodes);
    uint8_t *in_rank = malloc((size_t)R), *in_node = malloc((size_t)N);
    if (!per_expert || !ranks || !nodes || !in_rank || !in_node) {
        free(per_expert), free(ranks), free(nodes), free(in_rank), free(in_node);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "dispatch_layout reference: out of memory");
    }
    for (int64_t t = 0; t < T; t++) {
        memset(in_rank, 0, (size_t)R);
        memset(in_node, 0, (size_t)N);
        for (int k = 0; k < K; k++) {
            const int64_t id = id_at(p->ids, s->id_dtype, t * K + k);
            if (id < 0 || id >= E) continue; /* padding (-1) or not an expert: skipped */
            per_expert[id]++;                /* (t, k) pairs: a repeated id counts twice */
            in_rank[id / per_rank] = 1;
            in_node[id / per_node] = 1;
        }
        for (int r = 0; r < R; r++) ranks[r] += in_rank[r];
        for (int n = 0; n < N; n++) nodes[n] += in_node[n];
        if (p->is_token_in_rank) memcpy(p->is_token_in_rank + t * R, in_rank, (size_t)R);
    }
    if (p->tokens_per_expert) memcpy(p->tokens_per_expert, per_expert, sizeof *per_expert * (size_t)E);
    if (p->tokens_per_rank) memcpy(p->tokens_per_rank, ranks, sizeof *ranks * (size_t)R);
    if (p->tokens_per_node) memcpy(p->tokens_per_node, nodes, sizeof *nodes * (size_t)N);
    free(per_expert), free(ranks), free(nodes), free(in_rank), free(in_node);
    return MOEJIT_OK;
}

moejit_status moejit_dispatch_layout_reference(const moejit_dispatch_layout_spec *spec,
                                               const moejit_dispatch_layout_args *args)
{
    mj_error_clear();
    mj_dispatch_layout_shape s;
    mj_dispatch_layout_layout l;
    mj_dispatch_layout_params p;
    moejit_status st = mj_dispatch_layout_check_call(spec, args, &s, &l, &p); /* the launch's own checks */
    return st == MOEJIT_OK ? reference_run(&s, &p) : st;
}
