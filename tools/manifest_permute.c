/* Manifest entries of op "permute": the fields of moejit_permute_spec. */
#include "manifest.h"

int manifest_permute(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_PERMUTE;
    return mf_int(e, "hidden", &d->permute.hidden) || mf_dtype(e, "dtype", &d->permute.dtype) ||
                   mf_flag(e, "has_scale", &d->permute.has_scale)
               ? -1
               : 0;
}
