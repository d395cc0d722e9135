/* dispatch_layout's spec and arguments: validation and normalisation, its names, the layout of a
 * batch (one block, or a grid of counting and row blocks, decided from sizes alone so launches are
 * capturable) and the argument checks the launch and the reference share. */
#include "ops/dispatch_layout/dispatch_layout.h"

#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/strbuf.h"

#define SPEC_ERR(status, ...) mj_fail(status, "dispatch_layout spec: " __VA_ARGS__)
#define ARGS_ERR(status, ...) mj_fail(status, "dispatch_layout args: " __VA_ARGS__)

/* DeepEP's NUM_MAX_NVL_PEERS: the ranks of a node unless the spec says otherwise. */
enum { DEFAULT_RANKS_PER_NODE = 8 };

/* ranks_per_node 0: 8 ranks a node, or one node of all R ranks below 8 (DeepEP's layout: a
 * single NVLink domain of R < 8 ranks, else nodes of 8). */
static int default_ranks_per_node(int ranks) { return ranks < DEFAULT_RANKS_PER_NODE ? ranks : DEFAULT_RANKS_PER_NODE; }

moejit_status mj_dispatch_layout_normalize(const moejit_dispatch_layout_spec *spec, mj_dispatch_layout_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "dispatch_layout spec: spec is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("dispatch_layout spec", spec);
    if (st != MOEJIT_OK) return st;
    const int e = spec->num_experts, r = spec->num_ranks, k = spec->topk, rpn = spec->ranks_per_node;
    if (e < 1) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_experts = %d must be >= 1", e);
    if (e > MJ_DISPATCH_LAYOUT_MAX_EXPERTS)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED,
                        "num_experts = %d exceeds the maximum %d (MOEJIT_MAX_EXPERTS + MOEJIT_MAX_TOPK shared slots)",
                        e, MJ_DISPATCH_LAYOUT_MAX_EXPERTS);
    if (r < 1) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_ranks = %d must be >= 1", r);
    if (e % r)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "num_ranks = %d does not divide num_experts = %d (each rank holds E / R consecutive experts)",
                        r, e);
    if (k < 1) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk = %d must be >= 1", k);
    if (k > MJ_DISPATCH_LAYOUT_MAX_TOPK)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "topk = %d exceeds the maximum %d", k, MJ_DISPATCH_LAYOUT_MAX_TOPK);
    if (!mj_index_dtype_name((int)spec->id_dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "id_dtype = %d is not a moejit_index_dtype (0 int32, 1 int64, 2 int16)", (int)spec->id_dtype);
    if (rpn < 0)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "ranks_per_node = %d must be >= 0 (0: 8, or num_ranks when it is below 8)", rpn);
    const int resolved = rpn ? rpn : default_ranks_per_node(r);
    if (r % resolved) {
        if (rpn) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "ranks_per_node = %d does not divide num_ranks = %d", rpn, r);
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "ranks_per_node = 0 (the default, %d) does not divide num_ranks = %d: set ranks_per_node",
                        resolved, r);
    }
    out->experts = e;
    out->ranks = r;
    out->topk = k;
    out->id_dtype = (int32_t)spec->id_dtype;
    out->ranks_per_node = resolved;
    return MOEJIT_OK;
}

/* Short names of the id dtypes in kernel names. */
static const char *id_token(int d) { return d == MOEJIT_INDEX_INT64 ? "i64" : d == MOEJIT_INDEX_INT16 ? "i16" : "i32"; }

int mj_dispatch_layout_module_name(const mj_dispatch_layout_shape *s, char *buf, size_t cap)
{
    int n = 0;
    mj_appendf(buf, cap, &n, "moejit_dispatch_layout_e%d_r%d_k%d_%s", s->experts, s->ranks, s->topk,
               id_token(s->id_dtype));
    if (s->ranks_per_node != default_ranks_per_node(s->ranks)) mj_appendf(buf, cap, &n, "_rpn%d", s->ranks_per_node);
    return n;
}

/* An optional int32 output: NULL is fine, a misaligned pointer is not. */
static moejit_status check_optional(const char *name, const void *p)
{
    return p ? mj_check_pointer("dispatch_layout", name, p, 4) : MOEJIT_OK;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

moejit_status mj_dispatch_layout_check_call(const moejit_dispatch_layout_spec *spec,
                                            const moejit_dispatch_layout_args *a, mj_dispatch_layout_shape *s,
                                            mj_dispatch_layout_layout *l, mj_dispatch_layout_params *p)
{
    memset(l, 0, sizeof *l);
    memset(p, 0, sizeof *p);
    moejit_status st = mj_dispatch_layout_normalize(spec, s);
    if (st != MOEJIT_OK) return st;
    if (!a) return ARGS_ERR(MOEJIT_ERR_INVALID_ARGUMENT, "args is NULL");
    if ((st = MJ_CHECK_RESERVED("dispatch_layout args", a)) != MOEJIT_OK) return st;
    const int64_t T = a->num_tokens;
    if (T < 0) return ARGS_ERR(MOEJIT_ERR_INVALID_ARGUMENT, "num_tokens = %lld must be >= 0", (long long)T);
    if (T > INT32_MAX / s->topk)
        return ARGS_ERR(MOEJIT_ERR_UNSUPPORTED,
                        "num_tokens = %lld × topk = %d ids exceed %d (tokens_per_expert counts are int32)",
                        (long long)T, s->topk, INT32_MAX);
    if (T > 0 && (st = mj_check_pointer("dispatch_layout", "ids", a->ids, (size_t)mj_index_dtype_bytes(s->id_dtype))) !=
                     MOEJIT_OK)
        return st;
    if ((st = check_optional("tokens_per_rank", a->tokens_per_rank)) != MOEJIT_OK ||
        (st = check_optional("tokens_per_node", a->tokens_per_node)) != MOEJIT_OK ||
        (st = check_optional("tokens_per_expert", a->tokens_per_expert)) != MOEJIT_OK)
        return st;

    p->ids = a->ids;
    p->num_tokens = T;
    p->tokens_per_rank = a->tokens_per_rank;
    p->tokens_per_node = a->tokens_per_node;
    p->tokens_per_expert = a->tokens_per_expert;
    p->is_token_in_rank = T > 0 ? a->is_token_in_rank : NULL; /* [0, R]: nothing to write */
    const int counts = p->tokens_per_rank || p->tokens_per_node || p->tokens_per_expert;
    if (!counts && !p->is_token_in_rank) return MOEJIT_OK; /* nothing wanted: no launch */
    l->small = T <= MJ_DL_SMALL_TOKENS;
    if (l->small) {
        l->blocks = 1;
        return MOEJIT_OK;
    }
    const int nodes = mj_dl_nodes(s);
    p->expert_blocks = p->tokens_per_expert ? (int32_t)ceil_div(s->experts, MJ_DL_EXPERT_SLICE) : 0;
    p->rank_blocks = p->tokens_per_rank ? (int32_t)ceil_div(s->ranks, mj_dl_group_slice(s->ranks)) : 0;
    p->node_blocks = p->tokens_per_node ? (int32_t)ceil_div(nodes, mj_dl_group_slice(nodes)) : 0;
    p->row_tiles = p->is_token_in_rank ? (int32_t)ceil_div(T, MJ_DL_THREADS) : 0;
    l->blocks = (int64_t)p->expert_blocks + p->rank_blocks + p->node_blocks +
                (int64_t)p->row_tiles * ceil_div(s->ranks, MJ_DL_ROW_SLICE);
    return MOEJIT_OK;
}
