/* mx_scales as a kernel family: its normalised shape, validation, naming, launch plan and codegen. */
#ifndef MOEJIT_OP_MX_SCALES_H
#define MOEJIT_OP_MX_SCALES_H

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

/* The module's entries. */
enum { MJ_MX_TO_BLOCKED_3D = 0, MJ_MX_TO_BLOCKED_2D = 1, MJ_MX_FROM_BLOCKED_3D = 2, MJ_MX_FROM_BLOCKED_2D = 3 };

struct mj_op;
extern const struct mj_op mj_op_mx_scales;

#endif
