/* The table of kernel families. */
#include "op.h"
#include "op_align.h"
#include "op_mx_scales.h"
#include "op_route.h"
#include "op_route_align.h"
#include "op_rows.h"

static const mj_op *const k_ops[] = {&mj_op_route,       &mj_op_align,   &mj_op_route_align,
                                     &mj_op_mx_scales, &mj_op_permute, &mj_op_combine};

const mj_op *mj_op_get(int op)
{
    for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
        if ((int)k_ops[i]->op == op) return k_ops[i];
    return NULL;
}
