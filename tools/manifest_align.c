/* Manifest entries of op "align": the fields of moejit_align_spec. */
#include "manifest.h"

int manifest_align(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_ALIGN;
    moejit_align_spec *s = &d->align;
    return mf_int(e, "num_experts", &s->num_experts) || mf_int(e, "block_size", &s->block_size) ||
                   mf_index_dtype(e, "id_dtype", &s->id_dtype) || mf_int(e, "global_experts", &s->global_experts)
               ? -1
               : 0;
}
