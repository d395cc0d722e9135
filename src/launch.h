/* Launching a loaded kernel on the caller's stream. */
#ifndef MOEJIT_LAUNCH_H
#define MOEJIT_LAUNCH_H

#include "jit.h"

/* Launch `k` over `items` work items (ceil(items / plan.items_per_block) blocks, capped; kernels
 * loop grid-stride) with a single by-value parameter struct. */
moejit_status mj_launch(moejit_ctx *ctx, const mj_kernel *k, int64_t items, void *params, moejit_stream stream);

/* Pointer is NULL or not aligned to `align` bytes → MOEJIT_ERR_INVALID_ARGUMENT naming it. */
moejit_status mj_check_device_ptr(const char *op, const char *name, const void *p, size_t align);

#endif
