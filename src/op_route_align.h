/* route_align as a kernel family: its normalised shape, validation, naming, launch plan and
 * codegen. One module holds the fused kernel and, for larger batches, route's kernel and align's
 * kernels (over E+S experts), so that a prewarmed shape never compiles at run time. */
#ifndef MOEJIT_OP_ROUTE_ALIGN_H
#define MOEJIT_OP_ROUTE_ALIGN_H

#include "op_align.h"
#include "op_route.h"

typedef struct mj_route_align_shape {
    mj_route_shape route;
    int32_t block_size; /* B */
} mj_route_align_shape;

/* Validate a route_align spec (route's checks, then the block size) and normalise it. */
moejit_status mj_route_align_normalize(const moejit_route_align_spec *spec, mj_route_align_shape *out);

/* The fused kernel: align's geometry inside it (threads = the block, tile = max_tokens·(K+S)),
 * the token limit and its shared memory. */
typedef struct mj_route_align_fused {
    mj_align_geom align;
    int max_tokens;
    int smem_bytes;
} mj_route_align_fused;
void mj_route_align_fused_for(const mj_route_align_shape *s, mj_route_align_fused *f);

/* Entries: the fused kernel, route's kernel, then align's (MJ_ALIGN_*). */
enum { MJ_RA_FUSED = 0, MJ_RA_ROUTE = 1, MJ_RA_ALIGN = 2 };

struct mj_op;
extern const struct mj_op mj_op_route_align;

#endif
