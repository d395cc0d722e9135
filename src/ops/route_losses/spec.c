/* route_losses' spec and arguments: validation and normalisation, names, argument checks. */
#include "ops/route_losses/route_losses.h"

#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/strbuf.h"
#include "ops/route/route.h"

#define SPEC_ERR(status, ...) mj_fail(status, "route_losses spec: " __VA_ARGS__)

moejit_status mj_route_losses_normalize(const moejit_route_losses_spec *spec, mj_route_losses_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route_losses spec: spec is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("route_losses spec", spec);
    if (st != MOEJIT_OK) return st;
    const int e = spec->num_experts, k = spec->topk;
    if ((st = mj_route_check_sizes("route_losses spec", e, k)) != MOEJIT_OK) return st;
    const uint32_t all = MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE | MOEJIT_AUX_Z_LOSS;
    if (spec->aux_stats == 0 || (spec->aux_stats & ~all))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "aux_stats = 0x%x must be a non-empty set of MOEJIT_AUX_* flags (0x%x)",
                        spec->aux_stats, all);
    if (!mj_index_dtype_name((int)spec->seq_offset_dtype) || spec->seq_offset_dtype == MOEJIT_INDEX_INT16)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "seq_offset_dtype = %d must be 0 (int32) or 1 (int64)",
                        (int)spec->seq_offset_dtype);
    out->experts = e;
    out->topk = k;
    out->aux_stats = (int32_t)spec->aux_stats;
    out->seq_offset_dtype = (spec->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? (int32_t)spec->seq_offset_dtype : 0;
    return MOEJIT_OK;
}

int mj_route_losses_module_name(const mj_route_losses_shape *s, char *buf, size_t cap)
{
    return snprintf(buf, cap, "moejit_route_losses_e%d_k%d_%s%s%s%s", s->experts, s->topk,
                    (s->aux_stats & MOEJIT_AUX_LOAD_BALANCE) ? "lb" : "",
                    (s->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? "seq" : "", (s->aux_stats & MOEJIT_AUX_Z_LOSS) ? "z" : "",
                    s->seq_offset_dtype == MOEJIT_INDEX_INT64 ? "64" : "");
}

int mj_route_losses_describe(const mj_route_losses_shape *s, char *buf, size_t cap)
{
    char names[32];
    mj_aux_stats_format((uint32_t)s->aux_stats, names, sizeof names);
    int n = 0;
    mj_appendf(buf, cap, &n, "losses E=%d K=%d aux=%s", s->experts, s->topk, names);
    if (s->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE)
        mj_appendf(buf, cap, &n, " seq_offsets=%s", mj_index_dtype_name(s->seq_offset_dtype));
    return n;
}

moejit_status mj_route_losses_check_args(const mj_route_losses_shape *s, const moejit_route_losses_args *a,
                                         mj_route_losses_params *p)
{
    static const char op[] = "route_losses";
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: args is NULL", op);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("route_losses args", a)) != MOEJIT_OK) return st;
    if (a->num_tokens < 0 || a->num_tokens > ((int64_t)1 << 40))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld must be in 0..2^40", op,
                       (long long)a->num_tokens);
    if ((st = mj_check_pointer(op, "losses", a->losses, 4)) != MOEJIT_OK) return st;
    /* every statistic the flags name; lse is not read when T == 0 */
    const int needs = 1 | 2 | (a->num_tokens > 0 ? 4 : 0) | 8;
    if ((st = mj_aux_check(op, a->aux, (uint32_t)s->aux_stats, needs, s->seq_offset_dtype, s->experts)) != MOEJIT_OK)
        return st;
    const int seq = (s->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) != 0;
    *p = (mj_route_losses_params){
        .prob_sums = a->aux->prob_sums,
        .counts = a->aux->counts,
        .lse = (s->aux_stats & MOEJIT_AUX_Z_LOSS) ? a->aux->lse : NULL,
        .seq_offsets = seq ? a->aux->seq_offsets : NULL,
        .losses = a->losses,
        .num_tokens = a->num_tokens,
        .num_seqs = seq ? a->aux->num_seqs : 1,
    };
    return MOEJIT_OK;
}
