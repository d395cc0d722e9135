#include "api/ops.h"

#include "common/error.h"
#include "ops/align/align.h"
#include "ops/capacity/capacity.h"
#include "ops/dispatch_layout/dispatch_layout.h"
#include "ops/mx_scales/mx_scales.h"
#include "ops/permute_combine/permute_combine.h"
#include "ops/route/route.h"
#include "ops/route_align/route_align.h"
#include "ops/route_backward/route_backward.h"
#include "ops/route_losses/route_losses.h"

static const mj_op *const k_ops[] = {&mj_op_route,     &mj_op_align,           &mj_op_route_align,
                                     &mj_op_mx_scales, &mj_op_dispatch_layout, &mj_op_permute,
                                     &mj_op_combine,   &mj_op_permute_backward, &mj_op_combine_backward,
                                     &mj_op_route_backward, &mj_op_capacity, &mj_op_route_losses};

const mj_op *mj_op_for(int op)
{
    for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
        if ((int)k_ops[i]->op == op) return k_ops[i];
    return NULL;
}

moejit_status mj_kernel_id_from_desc(const moejit_kernel_desc *desc, mj_kernel_id *out)
{
    if (!desc) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "kernel descriptor is NULL");
    memset(out, 0, sizeof *out);
    const mj_op *op = mj_op_for((int)desc->op);
    if (!op) return mj_fail(MOEJIT_ERR_INVALID_SPEC, "kernel descriptor: op = %d is not a moejit_op", (int)desc->op);
    moejit_status st = mj_check_reserved("kernel descriptor", "reserved", &desc->reserved, 1, sizeof desc->reserved);
    if (st != MOEJIT_OK) return st;
    return op->normalize(desc, out);
}
