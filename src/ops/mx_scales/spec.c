/* mx_scales as a kernel family: spec validation and normalisation, names, plan and codegen. One
 * module per C holds every layout in both directions. */
#include "ops/mx_scales/mx_scales.h"

#include <stdio.h>
#include <string.h>

#include "common/error.h"

moejit_status mj_mx_scales_normalize(const moejit_mx_scales_spec *spec, mj_mx_scales_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "mx_scales spec: spec is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st = MJ_CHECK_RESERVED("mx_scales spec", spec);
    if (st != MOEJIT_OK) return st;
    const int c = spec->cols;
    if (c < 1) return mj_fail(MOEJIT_ERR_INVALID_SPEC, "mx_scales spec: cols = %d must be >= 1", c);
    if (c > MOEJIT_MAX_MX_COLS)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED, "mx_scales spec: cols = %d exceeds the maximum %d", c, MOEJIT_MAX_MX_COLS);
    out->cols = c;
    return MOEJIT_OK;
}

void mj_mx_geom_for(int cols, mj_mx_geom *g)
{
    g->tiles = (cols + 3) / 4;
    const int segs = (g->tiles + 3) / 4;
    /* At most 8 warps a block; the segments are shared out evenly between the chunks so that no
     * chunk is left mostly idle (C = 160: 2 chunks of 5 segments, not 8 + 2). */
    g->chunks = (segs + 7) / 8;
    g->segs = (segs + g->chunks - 1) / g->chunks;
}

moejit_status mj_mx_blocked_size(const char *op, int cols, moejit_mx_layout layout, int64_t groups, int64_t rows,
                                 int64_t *row_blocks, int64_t *col_tiles, size_t *bytes)
{
    *row_blocks = 0; /* defined on every path, failures included */
    *col_tiles = 0;
    *bytes = 0;
    if (layout != MOEJIT_MX_3D && layout != MOEJIT_MX_2D_GROUPS && layout != MOEJIT_MX_2D_K_GROUPS)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "%s args: layout = %d is not a moejit_mx_layout (0 3D, 1 2D groups, 2 2D K groups)", op,
                       (int)layout);
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
        *bytes = (size_t)(*row_blocks * row_block_bytes);
    } else if (layout == MOEJIT_MX_2D_K_GROUPS) {
        /* Group ends and padded column numbers are int32 in the kernel. */
        if (groups > (INT32_MAX - cols) / 3)
            return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                           "%s args: groups = %lld with cols = %d pass %d padded columns (group_ends are int32)", op,
                           (long long)groups, cols, INT32_MAX);
        *row_blocks = (rows + 127) / 128;
        *col_tiles = (cols + 3 * groups) / 4; /* each group wastes at most 3 columns */
        if (*col_tiles && *row_blocks > INT64_MAX / 512 / *col_tiles)
            return mj_fail(MOEJIT_ERR_UNSUPPORTED, "%s args: rows = %lld with groups = %lld overflows", op,
                           (long long)rows, (long long)groups);
        *bytes = (size_t)(*row_blocks * *col_tiles * 512);
    } else {
        *row_blocks = (rows + 127) / 128;
        if (groups && *row_blocks > INT64_MAX / row_block_bytes / groups)
            return mj_fail(MOEJIT_ERR_UNSUPPORTED, "%s args: groups = %lld × rows = %lld overflows", op,
                           (long long)groups, (long long)rows);
        *bytes = (size_t)(*row_blocks * row_block_bytes * groups);
    }
    return MOEJIT_OK;
}

moejit_status mj_mx_check_args(const char *op, const mj_mx_scales_shape *s, const moejit_mx_scales_args *a,
                               int to_blocked, mj_mx_params *p)
{
    memset(p, 0, sizeof *p);
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: args is NULL", op);
    size_t bytes;
    int64_t row_blocks, col_tiles;
    moejit_status st = MJ_CHECK_RESERVED("mx_scales args", a);
    if (st != MOEJIT_OK) return st;
    st = mj_mx_blocked_size(op, s->cols, a->layout, a->groups, a->rows, &row_blocks, &col_tiles, &bytes);
    if (st != MOEJIT_OK) return st;
    const int k_groups = a->layout == MOEJIT_MX_2D_K_GROUPS;
    const int grouped = a->layout == MOEJIT_MX_2D_GROUPS || k_groups; /* group_ends, no group_stride */
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
    const int64_t unit_tiles = mj_mx_k_unit_tiles(&g);
    *p = (mj_mx_params){
        .in = a->in,
        .out = a->out,
        .groups = a->groups,
        .rows = a->rows,
        .group_ends = grouped ? a->group_ends : NULL,
        .row_stride = row_stride,
        .group_stride = group_stride,
        .row_blocks = row_blocks,
        .col_tiles = col_tiles,
        .units = k_groups ? row_blocks * ((col_tiles + unit_tiles - 1) / unit_tiles)
                          : row_blocks * (grouped ? 1 : a->groups) * g.chunks,
    };
    if (p->units == 0 || (!to_blocked && grouped && a->groups == 0)) {
        p->units = 0; /* nothing to read or write */
        return MOEJIT_OK;
    }
    if ((st = mj_check_pointer(op, to_blocked ? "in" : "in (blocked)", a->in, to_blocked ? 1 : 16)) != MOEJIT_OK ||
        (st = mj_check_pointer(op, to_blocked ? "out (blocked)" : "out", a->out, to_blocked ? 16 : 1)) != MOEJIT_OK)
        return st;
    if (grouped && a->groups > 0 &&
        (st = mj_check_pointer(op, k_groups ? "group_ends (layout = 2D K groups)" : "group_ends (layout = 2D groups)",
                               a->group_ends, 4)) != MOEJIT_OK)
        return st;
    return MOEJIT_OK;
}
