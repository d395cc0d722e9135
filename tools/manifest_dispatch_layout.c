/* Manifest entries of op "dispatch_layout": the fields of moejit_dispatch_layout_spec. */
#include "manifest.h"

int manifest_dispatch_layout(mf_entry *e, moejit_kernel_desc *d)
{
    moejit_dispatch_layout_spec *s = &d->dispatch_layout;
    d->op = MOEJIT_OP_DISPATCH_LAYOUT;
    return mf_int(e, "num_experts", &s->num_experts) || mf_int(e, "num_ranks", &s->num_ranks) ||
                   mf_int(e, "topk", &s->topk) || mf_index_dtype(e, "id_dtype", &s->id_dtype) ||
                   mf_int(e, "ranks_per_node", &s->ranks_per_node)
               ? -1
               : 0;
}
