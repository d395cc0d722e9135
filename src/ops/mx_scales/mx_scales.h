/* mx_scales — mxfp8 e8m0 scales to the blocked (swizzled) layout and back (moejit.h Operation 4,
 * docs/DESIGN.md §2.5). One module per C holds every layout (3D, 2D with M groups, 2D with K
 * groups) in both directions.
 *
 * The op's one header: its normalised shape, the column geometry, its parameters (one table for
 * C and CUDA) and the argument checks shared by the launch and the reference. Plain C.
 *   spec.c       validate and normalise a spec, the geometry, sizes, argument checks
 *   codegen.c    the launch plan, the Cfg and entry points: where a shape becomes CUDA source
 *   launch.c     moejit_mx_scales, its inverse and moejit_mx_scales_blocked_bytes
 *   reference.c  torchao's to_blocked (per group for the 2D layouts) and its inverse, element by
 *                element */
#ifndef MOEJIT_OPS_MX_SCALES_H
#define MOEJIT_OPS_MX_SCALES_H

#include <stddef.h>
#include <stdint.h>

#include "common/params.h"
#include "moejit.h"

/* mx_scales spec after normalisation: only C is compile-time (mx_scales.cuh says why). */
typedef struct mj_mx_scales_shape {
    int32_t cols; /* C */
} mj_mx_scales_shape;

/* Validate an mx_scales spec and write its normalised shape. Errors name the field and value. */
moejit_status mj_mx_scales_normalize(const moejit_mx_scales_spec *spec, mj_mx_scales_shape *out);

/* How the columns are cut: tiles of 4, 16-byte segments (4 tiles) per block row, chunks of kSegs
 * segments (the units across a row). */
typedef struct mj_mx_geom {
    int tiles;  /* Cp / 4 */
    int segs;   /* 16-byte segments a unit spans = warps per block (1..8) */
    int chunks; /* units across the columns */
} mj_mx_geom;
void mj_mx_geom_for(int cols, mj_mx_geom *g);

/* The module's entries (2D: M groups, 2D_K: K groups). */
enum {
    MJ_MX_TO_BLOCKED_3D = 0,
    MJ_MX_TO_BLOCKED_2D = 1,
    MJ_MX_FROM_BLOCKED_3D = 2,
    MJ_MX_FROM_BLOCKED_2D = 3,
    MJ_MX_TO_BLOCKED_2D_K = 4,
    MJ_MX_FROM_BLOCKED_2D_K = 5,
    MJ_MX_ENTRIES = 6
};

/* Tile columns one K-groups unit covers in its 128-row block: 4 for each of the kSegs warps
 * (mx_scales.cuh). */
static inline int mj_mx_k_unit_tiles(const mj_mx_geom *g) { return 4 * g->segs; }

/* The kernels' parameters (mj::MxParams in mx_scales.cuh is emitted from this table).
 * row_blocks: 3D ceil(R/128) per group, 2D M groups blocked rows / 128, 2D K groups ceil(M/128);
 * col_tiles: K groups only, the blocked tensor's 4-column tiles a row block, round_down(C + 3G, 4)
 * / 4 (0 otherwise); units: blocks of work, row blocks (of every group) × column chunks (K groups:
 * × runs of mj_mx_k_unit_tiles tiles). */
#define MJ_MX_PARAMS(X, S)                                                                                 \
    X(S, const uint8_t *, in)  /* plain (to blocked) or blocked (from blocked) */                         \
    X(S, uint8_t *, out)       /* the other one */                                                        \
    X(S, int64_t, groups)                                                                                 \
    X(S, int64_t, rows)                                                                                   \
    X(S, const int32_t *, group_ends)                                                                     \
    X(S, int64_t, row_stride)                                                                             \
    X(S, int64_t, group_stride)                                                                           \
    X(S, int64_t, row_blocks)                                                                             \
    X(S, int64_t, col_tiles)                                                                              \
    X(S, int64_t, units)
typedef struct mj_mx_params {
    MJ_MX_PARAMS(MJ_PARAM_DECL, _)
} mj_mx_params;

/* Row blocks, column tiles (K groups; 0 otherwise) and bytes of the blocked tensor; rejects a bad
 * layout, negative sizes and sizes the kernels cannot index. `op` names the caller in messages. */
moejit_status mj_mx_blocked_size(const char *op, int cols, moejit_mx_layout layout, int64_t groups, int64_t rows,
                                 int64_t *row_blocks, int64_t *col_tiles, size_t *bytes);

/* Check the arguments of one direction (to_blocked: in is plain, out blocked; else the reverse)
 * and fill the kernel parameters. Pointers are not needed when there is nothing to do. */
moejit_status mj_mx_check_args(const char *op, const mj_mx_scales_shape *s, const moejit_mx_scales_args *a,
                               int to_blocked, mj_mx_params *p);

struct mj_op;
extern const struct mj_op mj_op_mx_scales;

#endif
