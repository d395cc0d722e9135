/* Manifest entries of op "combine_backward": the fields of moejit_combine_backward_spec. */
#include "manifest.h"

int manifest_combine_backward(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_COMBINE_BACKWARD;
    return mf_int(e, "hidden", &d->combine_backward.hidden) || mf_dtype(e, "dtype", &d->combine_backward.dtype) ? -1
                                                                                                                  : 0;
}
