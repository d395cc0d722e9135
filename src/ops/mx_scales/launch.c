/* moejit_mx_scales and its inverse: argument checks, then lookup (or first-use build) and one
 * launch of the module's entry for the layout and direction. */
#include <stdint.h>
#include <string.h>

#include "common/error.h"
#include "jit/launch.h"
#include "jit/loader.h"
#include "ops/mx_scales/mx_scales.h"

moejit_status moejit_mx_scales_blocked_bytes(const moejit_mx_scales_spec *spec, moejit_mx_layout layout,
                                             int64_t groups, int64_t rows, size_t *bytes)
{
    mj_error_clear();
    mj_mx_scales_shape s;
    moejit_status st = mj_mx_scales_normalize(spec, &s);
    if (st != MOEJIT_OK) return st;
    if (!bytes) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_mx_scales_blocked_bytes: bytes is NULL");
    int64_t row_blocks, col_tiles;
    return mj_mx_blocked_size("mx_scales", s.cols, layout, groups, rows, &row_blocks, &col_tiles, bytes);
}

static moejit_status mx_launch(moejit_ctx *ctx, const moejit_mx_scales_spec *spec, const moejit_mx_scales_args *args,
                               int to_blocked, moejit_stream stream)
{
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_mx_scales: ctx is NULL");
    mj_mx_scales_shape shape;
    moejit_status st = mj_mx_scales_normalize(spec, &shape);
    if (st != MOEJIT_OK) return st;
    mj_mx_params p;
    if ((st = mj_mx_check_args("mx_scales", &shape, args, to_blocked, &p)) != MOEJIT_OK) return st;
    if (p.units == 0) return MOEJIT_OK;
    mj_kernel_id id;
    mj_kernel_id_set(&id, &mj_op_mx_scales, &shape, sizeof shape);
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    int entry;
    switch (args->layout) {
    case MOEJIT_MX_2D_GROUPS: entry = to_blocked ? MJ_MX_TO_BLOCKED_2D : MJ_MX_FROM_BLOCKED_2D; break;
    case MOEJIT_MX_2D_K_GROUPS: entry = to_blocked ? MJ_MX_TO_BLOCKED_2D_K : MJ_MX_FROM_BLOCKED_2D_K; break;
    default: entry = to_blocked ? MJ_MX_TO_BLOCKED_3D : MJ_MX_FROM_BLOCKED_3D; break;
    }
    return mj_launch(ctx, k, entry, p.units, &p, stream);
}

moejit_status moejit_mx_scales(moejit_ctx *ctx, const moejit_mx_scales_spec *spec, const moejit_mx_scales_args *args,
                               moejit_stream stream)
{
    mj_error_clear();
    return mx_launch(ctx, spec, args, 1, stream);
}

moejit_status moejit_mx_scales_inverse(moejit_ctx *ctx, const moejit_mx_scales_spec *spec,
                                       const moejit_mx_scales_args *args, moejit_stream stream)
{
    mj_error_clear();
    return mx_launch(ctx, spec, args, 0, stream);
}
