/* route_backward's spec and arguments: validation and normalisation (route's checks first), the
 * names of shapes, and the argument checks the launch and the reference share. */
#include "ops/route_backward/route_backward.h"

#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/strbuf.h"

moejit_status mj_route_backward_normalize(const moejit_route_backward_spec *spec, mj_route_backward_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route_backward spec: spec is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("route_backward spec", spec);
    if (st != MOEJIT_OK) return st;
    /* the forward's spec must be one route accepts: its messages name the field of spec.route */
    mj_route_shape r;
    if ((st = mj_route_normalize(&spec->route, &r)) != MOEJIT_OK) return st;
    if (r.max_replicas > 0 && r.replay == MOEJIT_REPLAY_OFF)
        return mj_fail(MOEJIT_ERR_INVALID_SPEC,
                       "route_backward spec: route.max_replicas = %d (placement) makes route's ids physical, and the "
                       "backward needs the logical ones: route with route.replay = record and pass its logical_ids "
                       "as ids",
                       r.max_replicas);
    out->experts = r.experts;
    out->topk = r.topk;
    out->score = r.score;
    out->dtype = r.dtype;
    out->softcap = r.softcap;
    /* an elementwise score weighs a chosen expert by score(logit) with or without score_after_topk */
    out->score_after_topk = r.score == MOEJIT_SCORE_SOFTMAX && r.score_after_topk;
    out->renormalize = r.renormalize;
    out->scale_output = r.scale_output;
    out->scaling_factor = r.scaling_factor;
    out->shared_slots = r.shared_slots;
    out->id_dtype = r.max_replicas > 0 ? r.logical_id_dtype : r.id_dtype;
    out->aux_stats = r.aux_stats;
    out->seq_offset_dtype = r.seq_offset_dtype;
    return MOEJIT_OK;
}

mj_route_shape mj_route_backward_forward_shape(const mj_route_backward_shape *s)
{
    return (mj_route_shape){.experts = s->experts, .topk = s->topk, .score = s->score, .dtype = s->dtype, .groups = 1,
                            .topk_groups = 1, .softcap = s->softcap, .score_after_topk = s->score_after_topk,
                            .renormalize = s->renormalize, .scale_output = s->scale_output,
                            .scaling_factor = s->scaling_factor, .shared_slots = s->shared_slots,
                            .id_dtype = s->id_dtype, .physical_experts = s->experts};
}

int mj_route_backward_module_name(const mj_route_backward_shape *s, char *buf, size_t cap)
{
    char route[MJ_ROUTE_NAME_CAP];
    mj_route_shape r = mj_route_backward_forward_shape(s);
    r.aux_stats = s->aux_stats; /* named as route names them */
    r.seq_offset_dtype = s->seq_offset_dtype;
    mj_route_module_name(&r, route, sizeof route);
    static const char prefix[] = "moejit_route_";
    return snprintf(buf, cap, "moejit_route_backward_%s", route + strlen(prefix));
}

int mj_route_backward_describe(const mj_route_backward_shape *s, char *buf, size_t cap)
{
    mj_route_shape r = mj_route_backward_forward_shape(s);
    r.aux_stats = s->aux_stats;
    r.seq_offset_dtype = s->seq_offset_dtype;
    int n = 0;
    mj_appendf(buf, cap, &n, "backward of ");
    char route[512];
    mj_route_describe(&r, route, sizeof route);
    mj_appendf(buf, cap, &n, "%s", route);
    return n;
}

moejit_status mj_route_backward_check_args(const mj_route_backward_shape *s, const moejit_route_backward_args *a,
                                           mj_route_backward_params *p)
{
    static const char op[] = "route_backward";
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: args is NULL", op);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("route_backward args", a)) != MOEJIT_OK) return st;
    if (a->num_tokens < 0)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld must be >= 0", op,
                       (long long)a->num_tokens);
    const int64_t stride = a->row_stride ? a->row_stride : s->experts;
    if (stride < s->experts)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: row_stride = %lld is smaller than num_experts = %d", op,
                       (long long)a->row_stride, s->experts);
    const int elem = mj_dtype_bytes(s->dtype);
    int64_t bytes;
    if (__builtin_mul_overflow(a->num_tokens, stride * elem, &bytes))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld with row_stride = %lld overflows", op,
                       (long long)a->num_tokens, (long long)stride);
    const int64_t slots = s->topk + s->shared_slots;
    if (__builtin_mul_overflow(a->num_tokens, slots * 8, &bytes) ||
        __builtin_mul_overflow(a->num_tokens, (int64_t)s->experts * 4, &bytes))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld overflows the arrays", op,
                       (long long)a->num_tokens);
    *p = (mj_route_backward_params){
        .logits = a->logits,
        .ids = a->ids,
        .grad_weights = a->grad_weights,
        .grad_logits = a->grad_logits,
        .num_tokens = a->num_tokens,
        .row_stride = stride,
        .num_seqs = 1,
    };
    if (a->num_tokens == 0) return MOEJIT_OK; /* empty batch: pointers may be NULL, nothing runs */
    if ((st = mj_check_pointer(op, "logits", a->logits, (size_t)elem)) != MOEJIT_OK ||
        (st = mj_check_pointer(op, "ids", a->ids, (size_t)mj_index_dtype_bytes(s->id_dtype))) != MOEJIT_OK ||
        (st = mj_check_pointer(op, "grad_weights", a->grad_weights, 4)) != MOEJIT_OK ||
        (st = mj_check_pointer(op, "grad_logits", a->grad_logits, 4)) != MOEJIT_OK)
        return st;
    if (a->grad_losses && !s->aux_stats)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "%s args: grad_losses is set but spec.route.aux_stats = 0 (no loss to differentiate)", op);
    if (s->aux_stats && a->grad_losses) {
        if ((st = mj_check_pointer(op, "grad_losses", a->grad_losses, 4)) != MOEJIT_OK) return st;
        if (s->aux_stats & (MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE)) {
            if ((st = mj_aux_check(op, a->aux, (uint32_t)s->aux_stats, 2 | 8, s->seq_offset_dtype, s->experts)) !=
                MOEJIT_OK)
                return st;
            p->aux_counts = a->aux->counts;
            if (s->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) {
                p->seq_offsets = a->aux->seq_offsets;
                p->num_seqs = a->aux->num_seqs;
            }
        }
        p->grad_losses = a->grad_losses;
    }
    return MOEJIT_OK;
}
