/* Manifest entries of op "combine": the fields of moejit_combine_spec. */
#include "manifest.h"

int manifest_combine(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_COMBINE;
    return mf_int(e, "hidden", &d->combine.hidden) || mf_dtype(e, "dtype", &d->combine.dtype) ? -1 : 0;
}
