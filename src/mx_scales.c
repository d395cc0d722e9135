/* moejit_mx_scales and its inverse: argument checks, then lookup (or first-use build) and one
 * launch of the module's entry for the layout and direction. */
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "launch.h"
#include "mx_scales_launch.h"

moejit_status mj_mx_blocked_size(const char *op, int cols, moejit_mx_layout layout, int64_t groups, int64_t rows,
                                 int64_t *row_blocks, size_t *bytes)
{
    *row_blocks = 0; /* defined on every path, failures included */
    *bytes = 0;
    if (layout != MOEJIT_MX_3D && layout != MOEJIT_MX_2D_GROUPS)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: layout = %d is not a moejit_mx_layout (0 3D, 1 2D groups)",
                       op, (int)layout);
    if (groups < 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: groups = %lld must be >= 0", op, (long long)groups);
    if (rows < 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: rows = %lld must be >= 0", op, (long long)rows);
    const int64_t row_block_bytes = (int64_t)((cols + 3) / 4) * 512;
    if (layout == MOEJIT_MX_2D_GROUPS) {
        /* Group ends and blocked row numbers are int32 in the kernel. */
        if (groups > INT32_MAX / 128 || rows > INT32_MAX - 127 * groups)
            return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                           "%s args: rows = %lld with groups = %lld pass %d blocked rows (group_ends are int32)", op,
                           (long long)rows, (long long)groups, INT32_MAX);
        *row_blocks = (rows + 127 * groups) / 128;
    } else {
        *row_blocks = (rows + 127) / 128;
        if (groups && *row_blocks > INT64_MAX / row_block_bytes / groups)
            return mj_fail(MOEJIT_ERR_UNSUPPORTED, "%s args: groups = %lld × rows = %lld overflows", op,
                           (long long)groups, (long long)rows);
    }
    *bytes = (size_t)(*row_blocks * row_block_bytes * (layout == MOEJIT_MX_3D ? groups : 1));
    return MOEJIT_OK;
}

moejit_status mj_mx_check_args(const char *op, const mj_mx_scales_shape *s, const moejit_mx_scales_args *a,
                               int to_blocked, mj_mx_params *p)
{
    memset(p, 0, sizeof *p);
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: args is NULL", op);
    size_t bytes;
    int64_t row_blocks;
    moejit_status st = MJ_CHECK_RESERVED("mx_scales args", a);
    if (st != MOEJIT_OK) return st;
    st = mj_mx_blocked_size(op, s->cols, a->layout, a->groups, a->rows, &row_blocks, &bytes);
    if (st != MOEJIT_OK) return st;
    const int grouped = a->layout == MOEJIT_MX_2D_GROUPS;
    const int64_t row_stride = a->row_stride ? a->row_stride : s->cols;
    if (row_stride < s->cols)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: row_stride = %lld is smaller than cols = %d", op,
                       (long long)a->row_stride, s->cols);
    if (a->rows > INT64_MAX / row_stride)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: rows = %lld with row_stride = %lld overflows", op,
                       (long long)a->rows, (long long)row_stride);
    int64_t group_stride = 0;
    if (!grouped) {
        group_stride = a->group_stride ? a->group_stride : a->rows * row_stride;
        if (group_stride < a->rows * row_stride)
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                           "%s args: group_stride = %lld is smaller than rows × row_stride = %lld", op,
                           (long long)a->group_stride, (long long)(a->rows * row_stride));
        if (group_stride && a->groups > INT64_MAX / group_stride)
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: groups = %lld with group_stride = %lld overflows", op,
                           (long long)a->groups, (long long)group_stride);
    }
    mj_mx_geom g;
    mj_mx_geom_for(s->cols, &g);
    *p = (mj_mx_params){
        .in = a->in,
        .out = a->out,
        .groups = a->groups,
        .rows = a->rows,
        .group_ends = grouped ? a->group_ends : NULL,
        .row_stride = row_stride,
        .group_stride = group_stride,
        .row_blocks = row_blocks,
        .units = row_blocks * (grouped ? 1 : a->groups) * g.chunks,
    };
    if (p->units == 0 || (!to_blocked && grouped && a->groups == 0)) {
        p->units = 0; /* nothing to read or write */
        return MOEJIT_OK;
    }
    if ((st = mj_check_device_ptr(op, to_blocked ? "in" : "in (blocked)", a->in, to_blocked ? 1 : 16)) != MOEJIT_OK ||
        (st = mj_check_device_ptr(op, to_blocked ? "out (blocked)" : "out", a->out, to_blocked ? 16 : 1)) != MOEJIT_OK)
        return st;
    if (grouped && a->groups > 0 &&
        (st = mj_check_device_ptr(op, "group_ends (layout = 2D groups)", a->group_ends, 4)) != MOEJIT_OK)
        return st;
    return MOEJIT_OK;
}

moejit_status moejit_mx_scales_blocked_bytes(const moejit_mx_scales_spec *spec, moejit_mx_layout layout,
                                             int64_t groups, int64_t rows, size_t *bytes)
{
    mj_error_clear();
    mj_mx_scales_shape s;
    moejit_status st = mj_mx_scales_normalize(spec, &s);
    if (st != MOEJIT_OK) return st;
    if (!bytes) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_mx_scales_blocked_bytes: bytes is NULL");
    int64_t row_blocks;
    return mj_mx_blocked_size("mx_scales", s.cols, layout, groups, rows, &row_blocks, bytes);
}

static moejit_status mx_launch(moejit_ctx *ctx, const moejit_mx_scales_spec *spec, const moejit_mx_scales_args *args,
                               int to_blocked, moejit_stream stream)
{
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_mx_scales: ctx is NULL");
    mj_kernel_id id;
    memset(&id, 0, sizeof id);
    id.op = MOEJIT_OP_MX_SCALES;
    moejit_status st = mj_mx_scales_normalize(spec, &id.u.mx_scales);
    if (st != MOEJIT_OK) return st;
    mj_mx_params p;
    if ((st = mj_mx_check_args("mx_scales", &id.u.mx_scales, args, to_blocked, &p)) != MOEJIT_OK) return st;
    if (p.units == 0) return MOEJIT_OK;
    const mj_kernel *k;
    if ((st = mj_jit_kernel(ctx, &id, &k)) != MOEJIT_OK) return st;
    const int grouped = args->layout == MOEJIT_MX_2D_GROUPS;
    const int entry = to_blocked ? (grouped ? MJ_MX_TO_BLOCKED_2D : MJ_MX_TO_BLOCKED_3D)
                                 : (grouped ? MJ_MX_FROM_BLOCKED_2D : MJ_MX_FROM_BLOCKED_3D);
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
