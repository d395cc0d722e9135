/* Manifest entries of op "route_losses": the fields of moejit_route_losses_spec; a "model" entry
 * takes the preset's num_experts and topk (the entry's fields refine them, as for route). */
#include "manifest.h"

void manifest_route_losses_preset(const moejit_route_spec *preset, moejit_kernel_desc *d)
{
    d->route_losses.num_experts = preset->num_experts;
    d->route_losses.topk = preset->topk;
}

int manifest_route_losses(mf_entry *e, moejit_kernel_desc *d)
{
    moejit_route_losses_spec *s = &d->route_losses;
    d->op = MOEJIT_OP_ROUTE_LOSSES;
    return mf_int(e, "num_experts", &s->num_experts) || mf_int(e, "topk", &s->topk) ||
                   mf_aux_stats(e, "aux_stats", &s->aux_stats) ||
                   mf_seq_offset_dtype(e, "seq_offset_dtype", &s->seq_offset_dtype)
               ? -1
               : 0;
}
