/* Manifest entries of op "capacity": the fields of moejit_capacity_spec. */
#include "manifest.h"

int manifest_capacity(mf_entry *e, moejit_kernel_desc *d)
{
    moejit_capacity_spec *s = &d->capacity;
    d->op = MOEJIT_OP_CAPACITY;
    return mf_int(e, "num_experts", &s->num_experts) || mf_int(e, "topk", &s->topk) ||
                   mf_int(e, "shared_slots", &s->shared_slots) || mf_index_dtype(e, "id_dtype", &s->id_dtype) ||
                   mf_drop_policy(e, "policy", &s->policy)
               ? -1
               : 0;
}
