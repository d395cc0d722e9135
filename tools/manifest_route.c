/* Manifest entries of ops "route", "route_align" and "route_backward": the fields of
 * moejit_route_spec, and for route_align those of moejit_route_align_spec around it (the route
 * fields flat, beside block_size); route_backward's spec is the forward's route spec. */
#include "manifest.h"

static int route_fields(mf_entry *e, moejit_route_spec *s)
{
    if (mf_int(e, "num_experts", &s->num_experts) || mf_int(e, "topk", &s->topk) || mf_score(e, "score", &s->score) ||
        mf_dtype(e, "dtype", &s->dtype) || mf_int(e, "num_groups", &s->num_groups) ||
        mf_int(e, "topk_groups", &s->topk_groups) || mf_group_score(e, "group_score", &s->group_score) ||
        mf_flag(e, "has_bias", &s->has_bias) || mf_float(e, "softcap", 1, &s->softcap) ||
        mf_flag(e, "score_after_topk", &s->score_after_topk) || mf_flag(e, "renormalize", &s->renormalize) ||
        mf_flag(e, "scale_output", &s->scale_output) ||
        mf_float(e, "routed_scaling_factor", 0, &s->routed_scaling_factor) ||
        mf_int(e, "shared_slots", &s->shared_slots) || mf_flag(e, "padded", &s->padded) ||
        mf_index_dtype(e, "id_dtype", &s->id_dtype) || mf_int(e, "max_replicas", &s->max_replicas) ||
        mf_int(e, "num_physical_experts", &s->num_physical_experts) ||
        mf_load_counter(e, "load_counter", &s->load_counter) || mf_replay(e, "replay", &s->replay) ||
        mf_index_dtype(e, "logical_id_dtype", &s->logical_id_dtype) || mf_aux_stats(e, "aux_stats", &s->aux_stats) ||
        mf_seq_offset_dtype(e, "seq_offset_dtype", &s->seq_offset_dtype))
        return -1;
    return 0;
}

int manifest_route(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_ROUTE;
    return route_fields(e, &d->route);
}

int manifest_route_align(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_ROUTE_ALIGN;
    return route_fields(e, &d->route_align.route) || mf_int(e, "block_size", &d->route_align.block_size) ? -1 : 0;
}

int manifest_route_backward(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_ROUTE_BACKWARD;
    return route_fields(e, &d->route_backward.route);
}
