/* route_align — route, then align, in one launch for decode batches (moejit.h Operation 3,
 * docs/DESIGN.md §2.3). One module holds the fused kernel and, for larger batches, route's kernel
 * and align's kernels (over E+S experts), so that a prewarmed shape never compiles at run time.
 * Built from route and align (the one op allowed to include other ops). Plain C.
 *   spec.c       validate and normalise a spec, the fused kernel's geometry, names
 *   codegen.c    the launch plan, the Cfgs and entry points: where a shape becomes CUDA source
 *   launch.c     moejit_route_align and its size helpers: one launch, or route's then align's
 *   reference.c  moejit_route_align_reference: route's reference, then align's */
#ifndef MOEJIT_OPS_ROUTE_ALIGN_H
#define MOEJIT_OPS_ROUTE_ALIGN_H

#include "ops/align/align.h"
#include "ops/route/route.h"

typedef struct mj_route_align_shape {
    mj_route_shape route;
    int32_t block_size; /* B */
} mj_route_align_shape;

/* Validate a route_align spec (route's checks, then the block size) and normalise it. */
moejit_status mj_route_align_normalize(const moejit_route_align_spec *spec, mj_route_align_shape *out);

/* The align shape of the fallback's align launches (and of the reference): E+S experts, no map,
 * the ids as route writes them (int32). The fused kernel aligns route's int ids in shared memory
 * whatever this says. */
mj_align_shape mj_route_align_fallback_shape(const mj_route_align_shape *s);

/* The fused kernel: align's geometry inside it (threads = the block, tile = max_tokens·(K+S)),
 * the token limit on a cluster of blocks (sm_90+), what one block takes alone (the limit without
 * clusters), and its shared memory. Limits are 0 where it cannot take the shape (E > 1024, or
 * more shared memory than a block gets: the two launches then). */
typedef struct mj_route_align_fused {
    mj_align_geom align;
    int max_tokens;
    int block_tokens;
    int smem_bytes;
} mj_route_align_fused;
void mj_route_align_fused_for(const mj_route_align_shape *s, mj_route_align_fused *f);
/* The blocks (one cluster) of a fused launch of `tokens` <= its limit; 1 without clusters. */
int mj_route_align_fused_blocks(int64_t tokens, int clusters);

/* The fused kernel's parameters (mj::RouteAlignParams in route_align.cuh is emitted from this). */
#define MJ_ROUTE_ALIGN_PARAMS(X, S)                                                                        \
    X(S, mj_route_params, route)                                                                          \
    X(S, mj_align_params, align)
typedef struct mj_route_align_params {
    MJ_ROUTE_ALIGN_PARAMS(MJ_PARAM_DECL, _)
} mj_route_align_params;

/* Human-readable shape and module name of a shape. Return the length. */
int mj_route_align_module_name(const mj_route_align_shape *s, char *buf, size_t cap);
int mj_route_align_describe(const mj_route_align_shape *s, char *buf, size_t cap);

/* Entries: the fused kernel, route's kernel, then align's (MJ_ALIGN_*). */
enum { MJ_RA_FUSED = 0, MJ_RA_ROUTE = 1, MJ_RA_ALIGN = 2 };

struct mj_op;
extern const struct mj_op mj_op_route_align;

#endif
