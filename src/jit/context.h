/* The moejit_ctx: its resolved configuration, the disk cache, the kernel registry, NVRTC (found
 * once, loaded at the first compile), the compile-slot semaphore, the devices it serves and its
 * counters. */
#ifndef MOEJIT_JIT_CONTEXT_H
#define MOEJIT_JIT_CONTEXT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cache/store.h"
#include "jit/config.h"
#include "jit/flight.h"
#include "jit/nvrtc.h"
#include "jit/registry.h"

#define MJ_MAX_DEVICES 64

struct moejit_ctx {
    uint64_t serial; /* unique per context ever opened: what per-thread memos compare against */
    mj_config cfg; /* resolved at moejit_open */

    mj_cache *cache;
    mj_registry registry;

    /* NVRTC: located once (cheap, needed for every key), loaded on the first compile. */
    pthread_mutex_t nvrtc_mu;
    int nvrtc_located;
    mj_nvrtc_identity nvrtc_identity;
    mj_nvrtc *nvrtc;

    /* Bounded parallel compiles: a counting semaphore. */
    pthread_mutex_t jobs_mu;
    pthread_cond_t jobs_cv;
    int jobs_running;

    /* Compute capability per device ordinal (0 = not asked yet). */
    atomic_int device_cc[MJ_MAX_DEVICES];
    /* Primary contexts this ctx retained (bit per ordinal), released at close. */
    atomic_ullong retained_primaries;

    /* Threads waiting for another one building or loading the same thing (jit/flight.h). */
    mj_flights flights;

    atomic_ullong n_compiles, n_disk_hits, n_disk_misses, n_disk_writes, n_bad_entries, n_launches;
    atomic_ullong n_build_waits, n_lock_waits, n_lock_timeouts, n_lock_failures;
};


/* Create a context from cfg (may be NULL) and the environment; never touches the GPU. */
moejit_status mj_ctx_open(const moejit_config *cfg, moejit_ctx **out);
/* Unload its kernels, release the primary contexts it retained, free it. NULL is a no-op. */
void mj_ctx_close(moejit_ctx *ctx);

/* NVRTC identity for keys (locates it on first use). */
moejit_status mj_ctx_nvrtc_identity(moejit_ctx *ctx, const mj_nvrtc_identity **out);

/* The loaded NVRTC (loads it on first use). */
moejit_status mj_ctx_nvrtc(moejit_ctx *ctx, mj_nvrtc **out);

/* Device of the calling thread's current context (adopting the primary context of ctx->cfg.device
 * when there is none) and its compute capability, cached per ordinal. */
struct mj_driver;
moejit_status mj_ctx_current_device(moejit_ctx *ctx, const struct mj_driver *d, CUdevice *dev, int *cc);

/* Compile-slot semaphore around an NVRTC compile. */
void mj_ctx_compile_slot_acquire(moejit_ctx *ctx);
void mj_ctx_compile_slot_release(moejit_ctx *ctx);

#endif
