/* The C reference of mx_scales (docs/DESIGN.md §2.5): torchao's to_blocked, element by element, and its
 * inverse; the 2D layouts block each group of rows (torchao's triton_mx_block_rearrange_2d_M_groups)
 * or of columns (triton_mx_block_rearrange_2d_K_groups) on its own. */
#include <string.h>

#include "common/error.h"
#include "moejit_reference.h"
#include "ops/mx_scales/mx_scales.h"

/* Byte of scale (r, c) in a blocked matrix whose rows have `tiles` tiles of 4 columns. */
static size_t blocked_offset(int64_t r, int64_t c, int64_t tiles)
{
    return (size_t)(((r / 128) * tiles + c / 4) * 512 + (r % 32) * 16 + ((r % 128) / 32) * 4 + c % 4);
}

/* The 2D groups as [begin, end) row (M groups) or column (K groups) ranges, checked against
 * `limit` (M or C) and `what` ("rows" or "cols"): the kernel cannot report bad ends, the reference
 * can. */
static moejit_status check_group_ends(const moejit_mx_scales_args *a, int64_t limit, const char *what)
{
    int32_t before = 0;
    for (int64_t g = 0; g < a->groups; g++) {
        const int32_t end = a->group_ends[g];
        if (end < before)
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                           "mx_scales args: group_ends[%lld] = %d is smaller than the end before it, %d (ends must "
                           "not decrease)", (long long)g, end, before);
        if (end > limit)
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "mx_scales args: group_ends[%lld] = %d passes %s = %lld",
                           (long long)g, end, what, (long long)limit);
        before = end;
    }
    return MOEJIT_OK;
}

/* Copy every scale between the plain and the blocked tensor, one direction or the other. */
static moejit_status reference(const moejit_mx_scales_spec *spec, const moejit_mx_scales_args *a, int to_blocked)
{
    mj_mx_scales_shape s;
    moejit_status st = mj_mx_scales_normalize(spec, &s);
    if (st != MOEJIT_OK) return st;
    mj_mx_params p;
    if ((st = mj_mx_check_args("mx_scales", &s, a, to_blocked, &p)) != MOEJIT_OK) return st;
    if (p.units == 0) return MOEJIT_OK;
    const int grouped = a->layout == MOEJIT_MX_2D_GROUPS, k_groups = a->layout == MOEJIT_MX_2D_K_GROUPS;
    if (grouped && (st = check_group_ends(a, a->rows, "rows")) != MOEJIT_OK) return st;
    if (k_groups && (st = check_group_ends(a, s.cols, "cols")) != MOEJIT_OK) return st;
    const int64_t C = s.cols, tiles = (C + 3) / 4;
    uint8_t *plain = to_blocked ? (uint8_t *)(uintptr_t)a->in : a->out;
    uint8_t *blocked = to_blocked ? a->out : (uint8_t *)(uintptr_t)a->in;
    if (to_blocked) { /* padding is zero, and so is every byte after the last group */
        size_t bytes;
        int64_t row_blocks, col_tiles;
        mj_mx_blocked_size("mx_scales", s.cols, a->layout, a->groups, a->rows, &row_blocks, &col_tiles, &bytes);
        memset(blocked, 0, bytes);
    }
    if (k_groups) { /* group g: columns [begin, end) of every row, blocked as a [M, end - begin] matrix */
        const int64_t Rp = (a->rows + 127) / 128 * 128;
        int64_t blocked_col = 0; /* where group g starts in the blocked tensor, in padded columns */
        for (int64_t g = 0; g < a->groups; g++) {
            const int64_t begin = g ? a->group_ends[g - 1] : 0, cols = a->group_ends[g] - begin;
            const int64_t group_tiles = (cols + 3) / 4;
            uint8_t *dst = blocked + blocked_col * Rp;
            for (int64_t r = 0; r < a->rows; r++)
                for (int64_t c = 0; c < cols; c++) {
                    uint8_t *x = plain + r * p.row_stride + begin + c, *y = dst + blocked_offset(r, c, group_tiles);
                    if (to_blocked) *y = *x;
                    else *x = *y;
                }
            blocked_col += group_tiles * 4;
        }
        return MOEJIT_OK;
    }
    int64_t blocked_row = 0; /* where matrix g starts in the blocked tensor, in rows */
    for (int64_t g = 0; g < a->groups; g++) {
        const int64_t begin = grouped ? (g ? a->group_ends[g - 1] : 0) : 0;
        const int64_t rows = grouped ? a->group_ends[g] - begin : a->rows;
        uint8_t *src = plain + (grouped ? begin * p.row_stride : g * p.group_stride);
        uint8_t *dst = blocked + blocked_row * tiles * 4;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < C; c++) {
                uint8_t *x = src + r * p.row_stride + c, *y = dst + blocked_offset(r, c, tiles);
                if (to_blocked) *y = *x;
                else *x = *y;
            }
        blocked_row += (rows + 127) / 128 * 128;
    }
    return MOEJIT_OK;
}

moejit_status moejit_mx_scales_reference(const moejit_mx_scales_spec *spec, const moejit_mx_scales_args *host_args)
{
    mj_error_clear();
    return reference(spec, host_args, 1);
}

moejit_status moejit_mx_scales_inverse_reference(const moejit_mx_scales_spec *spec,
                                                 const moejit_mx_scales_args *host_args)
{
    mj_error_clear();
    return reference(spec, host_args, 0);
}
