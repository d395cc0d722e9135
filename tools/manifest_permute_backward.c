/* Manifest entries of op "permute_backward": the fields of moejit_permute_backward_spec. */
#include "manifest.h"

int manifest_permute_backward(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_PERMUTE_BACKWARD;
    return mf_int(e, "hidden", &d->permute_backward.hidden) || mf_dtype(e, "dtype", &d->permute_backward.dtype) ||
                   mf_flag(e, "has_scale", &d->permute_backward.has_scale)
               ? -1
               : 0;
}
