/* The moejit_ctx: resolved configuration, the disk cache, the registry, NVRTC and counters. */
#ifndef MOEJIT_CONTEXT_H
#define MOEJIT_CONTEXT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "../cache/store.h"
#include "compiler.h"
#include "registry.h"

#define MJ_MAX_DEVICES 64

struct moejit_ctx {
    uint64_t serial; /* unique per context ever opened: what per-thread memos compare against */
    /* Resolved configuration (config fields, then environment, then defaults). */
    char cache_dir[PATH_MAX];
    moejit_cache_mode cache_mode;
    const char *cache_mode_from; /* where the mode came from, for reports: "MOEJIT_CACHE=ro"… */
    int no_compile;
    int always_compile;
    char dump_dir[PATH_MAX];
    char extra_flags[2048];
    int device;
    int compile_jobs;
    uint64_t cache_max_bytes; /* 0: no limit */
    int lock_timeout_ms;      /* per-key cross-process lock; 0: no lock */

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

    /* In-process single flight of builds, by cache key (jit.c): the builds in progress. */
    pthread_mutex_t flight_mu;
    struct mj_flight *flights;

    atomic_ullong n_compiles, n_disk_hits, n_disk_misses, n_disk_writes, n_bad_entries, n_launches;
    atomic_ullong n_build_waits, n_lock_waits, n_lock_timeouts, n_lock_failures;
};

/* Default of moejit_config.cache_lock_timeout_ms / MOEJIT_CACHE_LOCK_TIMEOUT_MS: longer than any
 * one compile takes (the largest kernels take well under a second on an idle core), short
 * enough that a stuck holder costs little. */
#define MJ_DEFAULT_LOCK_TIMEOUT_MS 10000

/* NVRTC identity for keys (locates it on first use). */
moejit_status mj_ctx_nvrtc_identity(moejit_ctx *ctx, const mj_nvrtc_identity **out);

/* The loaded NVRTC (loads it on first use). */
moejit_status mj_ctx_nvrtc(moejit_ctx *ctx, mj_nvrtc **out);

/* Device of the calling thread's current context (adopting the primary context of ctx->device
 * when there is none) and its compute capability, cached per ordinal. */
struct mj_driver;
moejit_status mj_ctx_current_device(moejit_ctx *ctx, const struct mj_driver *d, CUdevice *dev, int *cc);

/* Compile-slot semaphore around an NVRTC compile. */
void mj_ctx_compile_slot_acquire(moejit_ctx *ctx);
void mj_ctx_compile_slot_release(moejit_ctx *ctx);

#endif
