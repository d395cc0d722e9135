/* A context's life (open, close) and the shared resources its builds and launches take: NVRTC,
 * compile slots, the current device. */
#include "jit/context.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "jit/driver.h"

moejit_status mj_ctx_open(const moejit_config *cfg, moejit_ctx **out)
{
    *out = NULL;
    moejit_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory creating a context");
    static atomic_ullong next_serial = 1;
    ctx->serial = atomic_fetch_add(&next_serial, 1);
    moejit_status st = mj_config_resolve(cfg, &ctx->cfg);
    if (st == MOEJIT_OK) st = mj_cache_open(ctx->cfg.cache_dir, ctx->cfg.cache_mode, &ctx->cache);
    if (st == MOEJIT_OK && mj_registry_init(&ctx->registry) != 0)
        st = mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory creating the kernel registry");
    if (st != MOEJIT_OK) {
        mj_cache_close(ctx->cache);
        free(ctx);
        return st;
    }
    pthread_mutex_init(&ctx->nvrtc_mu, NULL);
    pthread_mutex_init(&ctx->jobs_mu, NULL);
    pthread_cond_init(&ctx->jobs_cv, NULL);
    mj_flights_init(&ctx->flights);
    mj_debug("context: cache %s (%s), %d compile jobs", ctx->cfg.cache_dir[0] ? ctx->cfg.cache_dir : "off",
             ctx->cfg.cache_mode == MOEJIT_CACHE_RW ? "rw" : ctx->cfg.cache_mode == MOEJIT_CACHE_RO ? "ro" : "off",
             ctx->cfg.compile_jobs);
    *out = ctx;
    return MOEJIT_OK;
}

static void unload_kernel(mj_kernel *k, void *user)
{
    const mj_driver *d = user;
    if (d && k->library) d->library_unload(k->library);
}

void mj_ctx_close(moejit_ctx *ctx)
{
    if (!ctx) return;
    const mj_driver *d = NULL;
    /* Only kernels were loaded if the driver was; asking costs nothing once it is loaded. */
    if (ctx->n_launches || atomic_load(&ctx->retained_primaries) || mj_registry_loaded(&ctx->registry))
        (void)mj_driver_get(&d);
    mj_registry_destroy(&ctx->registry, unload_kernel, (void *)d);
    unsigned long long retained = atomic_load(&ctx->retained_primaries);
    for (int i = 0; d && i < MJ_MAX_DEVICES; i++)
        if (retained & (1ull << i)) d->primary_ctx_release(i);
    mj_nvrtc_close(ctx->nvrtc);
    mj_cache_close(ctx->cache);
    pthread_mutex_destroy(&ctx->nvrtc_mu);
    pthread_mutex_destroy(&ctx->jobs_mu);
    pthread_cond_destroy(&ctx->jobs_cv);
    mj_flights_destroy(&ctx->flights);
    free(ctx);
}

moejit_status mj_ctx_nvrtc_identity(moejit_ctx *ctx, const mj_nvrtc_identity **out)
{
    moejit_status st = MOEJIT_OK;
    pthread_mutex_lock(&ctx->nvrtc_mu);
    if (!ctx->nvrtc_located) {
        st = mj_nvrtc_locate(&ctx->nvrtc_identity);
        ctx->nvrtc_located = st == MOEJIT_OK;
    }
    pthread_mutex_unlock(&ctx->nvrtc_mu);
    *out = &ctx->nvrtc_identity;
    return st;
}

moejit_status mj_ctx_nvrtc(moejit_ctx *ctx, mj_nvrtc **out)
{
    const mj_nvrtc_identity *id;
    moejit_status st = mj_ctx_nvrtc_identity(ctx, &id);
    if (st != MOEJIT_OK) return st;
    pthread_mutex_lock(&ctx->nvrtc_mu);
    if (!ctx->nvrtc) st = mj_nvrtc_open(id, &ctx->nvrtc);
    *out = ctx->nvrtc;
    pthread_mutex_unlock(&ctx->nvrtc_mu);
    return st;
}

void mj_ctx_compile_slot_acquire(moejit_ctx *ctx)
{
    pthread_mutex_lock(&ctx->jobs_mu);
    while (ctx->jobs_running >= ctx->cfg.compile_jobs) pthread_cond_wait(&ctx->jobs_cv, &ctx->jobs_mu);
    ctx->jobs_running++;
    pthread_mutex_unlock(&ctx->jobs_mu);
}

void mj_ctx_compile_slot_release(moejit_ctx *ctx)
{
    pthread_mutex_lock(&ctx->jobs_mu);
    ctx->jobs_running--;
    pthread_cond_signal(&ctx->jobs_cv);
    pthread_mutex_unlock(&ctx->jobs_mu);
}

moejit_status mj_ctx_current_device(moejit_ctx *ctx, const mj_driver *d, CUdevice *dev, int *cc)
{
    int retained;
    moejit_status st = mj_driver_current_device(d, ctx->cfg.device, dev, &retained);
    if (st != MOEJIT_OK) return st;
    if (*dev < 0 || *dev >= MJ_MAX_DEVICES)
        return mj_fail(MOEJIT_ERR_UNSUPPORTED, "device ordinal %d: at most %d devices are supported", (int)*dev,
                       MJ_MAX_DEVICES);
    if (retained >= 0) {
        const unsigned long long bit = 1ull << (unsigned)retained;
        if (atomic_fetch_or(&ctx->retained_primaries, bit) & bit) d->primary_ctx_release(*dev); /* one is enough */
    }
    *cc = atomic_load_explicit(&ctx->device_cc[*dev], memory_order_relaxed);
    if (*cc == 0) {
        st = mj_driver_device_cc(d, *dev, cc);
        if (st != MOEJIT_OK) return st;
        atomic_store_explicit(&ctx->device_cc[*dev], *cc, memory_order_relaxed);
    }
    return MOEJIT_OK;
}
