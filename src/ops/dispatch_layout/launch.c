/* moejit_dispatch_layout: argument checks, then lookup (or first-use build) and one launch — one
 * block for a decode batch, else a grid of counting blocks and row blocks. */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "jit/launch.h"
#include "jit/loader.h"
#include "ops/dispatch_layout/dispatch_layout.h"

moejit_status moejit_dispatch_layout(moejit_ctx *ctx, const moejit_dispatch_layout_spec *spec,
                                     const moejit_dispatch_layout_args *args, moejit_stream stream)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_dispatch_layout: ctx is NULL");
    mj_dispatch_layout_shape s;
    mj_dispatch_layout_layout l;
    mj_dispatch_layout_params p;
    moejit_status st = mj_dispatch_layout_check_call(spec, args, &s, &l, &p);
    if (st != MOEJIT_OK || l.blocks == 0) return st;
    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_dispatch_layout, &s, sizeof s);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    return mj_launch(ctx, k, l.small ? MJ_DL_SMALL : MJ_DL_GRID, l.blocks, &p, stream);
}
