/* moejit_capacity: argument checks, then lookup (or first-use build) and one launch of E blocks. */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "jit/launch.h"
#include "jit/loader.h"
#include "ops/capacity/capacity.h"

moejit_status moejit_capacity(moejit_ctx *ctx, const moejit_capacity_spec *spec, const moejit_capacity_args *args,
                              moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_capacity: ctx is NULL");
    mj_capacity_shape s;
    mj_capacity_params p;
    int launch;
    moejit_status st = mj_capacity_check_call(spec, args, &s, &p, &launch);
    if (st != MOEJIT_OK || !launch) return st;
    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_capacity, &s, sizeof s);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    return mj_launch(ctx, k, 0, s.experts, &p, stream);
}
