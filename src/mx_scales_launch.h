/* mx_scales' argument checks and kernel parameters, shared by the launch path and the reference. */
#ifndef MOEJIT_MX_SCALES_LAUNCH_H
#define MOEJIT_MX_SCALES_LAUNCH_H

#include "op_mx_scales.h"

/* Must match mj::MxParams in kernel_templates/mx_scales.cuh. */
typedef struct mj_mx_params {
    const void *in;
    void *out;
    int64_t groups;
    int64_t rows;
    const int32_t *group_ends;
    int64_t row_stride;
    int64_t group_stride;
    int64_t row_blocks; /* 3D: ceil(R/128) per group; 2D: blocked rows / 128 */
    int64_t units;      /* blocks of work: row blocks (of every group) × column chunks */
} mj_mx_params;

/* Row blocks and bytes of the blocked tensor; rejects a bad layout, negative sizes and sizes the
 * kernels cannot index. `op` names the caller in messages. */
moejit_status mj_mx_blocked_size(const char *op, int cols, moejit_mx_layout layout, int64_t groups, int64_t rows,
                                 int64_t *row_blocks, size_t *bytes);

/* Check the arguments of one direction (to_blocked: in is plain, out blocked; else the reverse)
 * and fill the kernel parameters. Pointers are not needed when there is nothing to do. */
moejit_status mj_mx_check_args(const char *op, const mj_mx_scales_shape *s, const moejit_mx_scales_args *a,
                               int to_blocked, mj_mx_params *p);

#endif
