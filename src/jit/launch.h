/* Launching a loaded kernel on the caller's stream. */
#ifndef MOEJIT_LAUNCH_H
#define MOEJIT_LAUNCH_H

#include "jit/build.h"

/* Launch entry `entry` of `k` on `blocks` blocks (capped at 2^31-1: kernels loop grid-stride)
 * with a single by-value parameter struct. */
moejit_status mj_launch(moejit_ctx *ctx, const mj_kernel *k, int entry, int64_t blocks, void *params,
                        moejit_stream stream);

/* 1 if k's device runs thread-block clusters (sm_90+) and the driver can launch them. */
int mj_launch_clusters(const mj_kernel *k);
/* mj_launch on a grid that is one cluster of `blocks` blocks (at most 8, the portable size; more
 * than 1 only where mj_launch_clusters(k)). */
moejit_status mj_launch_cluster(moejit_ctx *ctx, const mj_kernel *k, int entry, int blocks, void *params,
                                moejit_stream stream);

/* The calling thread's current CUDA context (NULL if none or no driver): cheap, for memos. */
CUcontext mj_launch_context(void);

/* ceil(items / per_block). */
static inline int64_t mj_blocks_for(int64_t items, int per_block) { return (items + per_block - 1) / per_block; }


#endif
