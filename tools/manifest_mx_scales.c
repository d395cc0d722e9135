/* Manifest entries of op "mx_scales": the fields of moejit_mx_scales_spec. */
#include "manifest.h"

int manifest_mx_scales(mf_entry *e, moejit_kernel_desc *d)
{
    d->op = MOEJIT_OP_MX_SCALES;
    return mf_int(e, "cols", &d->mx_scales.cols) ? -1 : 0;
}
