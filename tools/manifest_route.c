/* Manifest entries of op "route": the fields of moejit_route_spec. */
#include "manifest.h"

int manifest_route(mf_entry *e, moejit_kernel_desc *d)
{
    moejit_route_spec *s = &d->route;
    d->op = MOEJIT_OP_ROUTE;
    if (mf_int(e, "num_experts", &s->num_experts) || mf_int(e, "topk", &s->topk) || mf_score(e, "score", &s->score) ||
        mf_dtype(e, "dtype", &s->dtype) || mf_int(e, "num_groups", &s->num_groups) ||
        mf_int(e, "topk_groups", &s->topk_groups) || mf_group_score(e, "group_score", &s->group_score) ||
        mf_flag(e, "has_bias", &s->has_bias) || mf_float(e, "softcap", &s->softcap) ||
        mf_flag(e, "score_after_topk", &s->score_after_topk) || mf_flag(e, "renormalize", &s->renormalize) ||
        mf_flag(e, "scale_output", &s->scale_output) ||
        mf_float(e, "routed_scaling_factor", &s->routed_scaling_factor) ||
        mf_int(e, "shared_slots", &s->shared_slots))
        return -1;
    return 0;
}
