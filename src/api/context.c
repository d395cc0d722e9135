/* The public entry points of a context and of the run time's answers: open and close, the
 * getters, status names and the error detail (docs/DESIGN.md §3.2). */
#include <stdatomic.h>
#include <string.h>

#include "common/error.h"
#include "jit/context.h"
#include "jit/driver.h"

moejit_status moejit_open(const moejit_config *cfg, moejit_ctx **out)
{
    mj_error_clear();
    if (!out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_open: out is NULL");
    return mj_ctx_open(cfg, out);
}

void moejit_close(moejit_ctx *ctx) { mj_ctx_close(ctx); }

const char *moejit_ctx_cache_dir(const moejit_ctx *ctx) { return ctx ? mj_cache_root(ctx->cache) : ""; }

moejit_status moejit_ctx_stats(const moejit_ctx *ctx, moejit_stats *out)
{
    mj_error_clear();
    if (!ctx || !out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_ctx_stats: %s is NULL", ctx ? "out" : "ctx");
    moejit_ctx *c = (moejit_ctx *)ctx; /* counting kernels takes the registry's writer lock */
    memset(out, 0, sizeof *out);
    out->kernels = mj_registry_loaded(&c->registry);
    out->compiles = atomic_load(&ctx->n_compiles);
    out->disk_hits = atomic_load(&ctx->n_disk_hits);
    out->disk_misses = atomic_load(&ctx->n_disk_misses);
    out->disk_writes = atomic_load(&ctx->n_disk_writes);
    out->bad_entries = atomic_load(&ctx->n_bad_entries);
    out->launches = atomic_load(&ctx->n_launches);
    out->build_waits = atomic_load(&ctx->n_build_waits);
    out->lock_waits = atomic_load(&ctx->n_lock_waits);
    out->lock_timeouts = atomic_load(&ctx->n_lock_timeouts);
    out->lock_failures = atomic_load(&ctx->n_lock_failures);
    mj_cache_counters cc = {0};
    if (ctx->cache) mj_cache_counters_get(ctx->cache, &cc);
    out->disk_write_errors = cc.write_errors;
    out->temps_swept = cc.temps_swept;
    return MOEJIT_OK;
}


moejit_status moejit_ctx_device_arch(moejit_ctx *ctx, char *buf, size_t cap)
{
    mj_error_clear();
    if (!ctx || !buf || cap < 16)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_ctx_device_arch: ctx and a buffer of >= 16 bytes are required");
    const mj_driver *d;
    moejit_status st = mj_driver_get(&d);
    CUdevice dev;
    int cc;
    if (st == MOEJIT_OK) st = mj_ctx_current_device(ctx, d, &dev, &cc);
    if (st == MOEJIT_OK) mj_arch_for_cc(cc, buf, cap);
    return st;
}

moejit_status moejit_ctx_pdl(moejit_ctx *ctx, int *requested, int *active)
{
    mj_error_clear();
    if (!ctx || !requested)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_ctx_pdl: %s is NULL", ctx ? "requested" : "ctx");
    *requested = ctx->cfg.pdl;
    if (!active) return MOEJIT_OK;
    *active = 0;
    const mj_driver *d;
    moejit_status st = mj_driver_get(&d);
    CUdevice dev;
    int cc;
    if (st == MOEJIT_OK) st = mj_ctx_current_device(ctx, d, &dev, &cc);
    if (st == MOEJIT_OK) *active = ctx->cfg.pdl && mj_driver_pdl(d, cc); /* what jit/loader.c decides */
    return st;
}

const char *moejit_status_str(moejit_status status)
{
    switch (status) {
    case MOEJIT_OK: return "MOEJIT_OK";
    case MOEJIT_ERR_INVALID_ARGUMENT: return "MOEJIT_ERR_INVALID_ARGUMENT";
    case MOEJIT_ERR_INVALID_SPEC: return "MOEJIT_ERR_INVALID_SPEC";
    case MOEJIT_ERR_UNSUPPORTED: return "MOEJIT_ERR_UNSUPPORTED";
    case MOEJIT_ERR_OUT_OF_MEMORY: return "MOEJIT_ERR_OUT_OF_MEMORY";
    case MOEJIT_ERR_NO_NVRTC: return "MOEJIT_ERR_NO_NVRTC";
    case MOEJIT_ERR_COMPILE: return "MOEJIT_ERR_COMPILE";
    case MOEJIT_ERR_NO_DRIVER: return "MOEJIT_ERR_NO_DRIVER";
    case MOEJIT_ERR_NO_DEVICE: return "MOEJIT_ERR_NO_DEVICE";
    case MOEJIT_ERR_CUDA: return "MOEJIT_ERR_CUDA";
    case MOEJIT_ERR_CACHE_MISS: return "MOEJIT_ERR_CACHE_MISS";
    case MOEJIT_ERR_IO: return "MOEJIT_ERR_IO";
    case MOEJIT_ERR_NOT_FOUND: return "MOEJIT_ERR_NOT_FOUND";
    case MOEJIT_ERR_CORRUPT: return "MOEJIT_ERR_CORRUPT";
    case MOEJIT_ERR_AMBIGUOUS: return "MOEJIT_ERR_AMBIGUOUS";
    }
    return "MOEJIT_ERR_UNKNOWN";
}

const char *moejit_last_error(const moejit_ctx *ctx)
{
    (void)ctx;
    return mj_error_text();
}
