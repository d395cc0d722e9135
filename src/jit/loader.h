/* The launch path's look-up: the loaded kernel of a kernel id on the calling thread's current
 * device. A shape seen before is a lock-free registry probe; its first use builds the module
 * (jit/build.c), loads it with cuLibraryLoadData and registers it. */
#ifndef MOEJIT_JIT_LOADER_H
#define MOEJIT_JIT_LOADER_H

#include "jit/context.h"

/* The kernel of `id` for the current device's arch, built and loaded on first use (concurrent
 * first uses in a context load it once: they join one flight keyed by the registry key). */
moejit_status mj_jit_kernel(moejit_ctx *ctx, const mj_kernel_id *id, const mj_kernel **out);

#endif
