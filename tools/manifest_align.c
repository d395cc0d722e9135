/* Manifest entries of op "align": the fields of moejit_align_spec. */
#include "manifest.h"

int manifest_align(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_ALIGN;
    return mf_int(e, "num_experts", &d->align.num_experts) || mf_int(e, "block_size", &d->align.block_size) ? -1 : 0;
}
