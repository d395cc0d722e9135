/* moejit_open / moejit_close: configuration from the struct, then the environment, then defaults. */
#include "context.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cache/maintenance.h"
#include "driver.h"
#include "error.h"
#include "log.h"

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

/* 0/1 from "0|1|false|true|no|yes|off|on"; -1 if unrecognised. */
static int parse_bool(const char *v)
{
    static const char *const no[] = {"0", "false", "no", "off"}, *const yes[] = {"1", "true", "yes", "on"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, no[i])) return 0;
        if (!strcasecmp(v, yes[i])) return 1;
    }
    return -1;
}

static moejit_status env_bool(const char *name, int *out)
{
    const char *v = env(name);
    if (!v) return MOEJIT_OK;
    int b = parse_bool(v);
    if (b < 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s = \"%s\" must be 0 or 1", name, v);
    *out = b;
    return MOEJIT_OK;
}

/* Make a path absolute against the working directory (the cache root must not move with cwd). */
static moejit_status absolute_path(const char *path, const char *what, char *out, size_t cap)
{
    int n;
    if (path[0] == '/') {
        n = snprintf(out, cap, "%s", path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return mj_fail(MOEJIT_ERR_IO, "%s = \"%s\" is relative and the working directory is unknown", what, path);
        n = snprintf(out, cap, "%s/%s", cwd, path);
    }
    if (n < 0 || (size_t)n >= cap) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s = \"%s\" is too long", what, path);
    return MOEJIT_OK;
}

static moejit_status resolve_cache_dir(const moejit_config *cfg, moejit_ctx *ctx)
{
    if (ctx->cache_mode == MOEJIT_CACHE_OFF) return MOEJIT_OK;
    if (cfg && cfg->cache_dir && *cfg->cache_dir)
        return absolute_path(cfg->cache_dir, "moejit_config.cache_dir", ctx->cache_dir, sizeof ctx->cache_dir);
    if (env("MOEJIT_CACHE_DIR"))
        return absolute_path(env("MOEJIT_CACHE_DIR"), "MOEJIT_CACHE_DIR", ctx->cache_dir, sizeof ctx->cache_dir);
    char base[PATH_MAX];
    /* The XDG base directory spec: a relative path in XDG_CACHE_HOME is invalid and ignored. */
    const char *xdg = env("XDG_CACHE_HOME");
    if (xdg && xdg[0] != '/') {
        mj_debug("XDG_CACHE_HOME = \"%s\" is not absolute: ignored", xdg);
        xdg = NULL;
    }
    if (xdg) {
        snprintf(base, sizeof base, "%s/moejit", xdg);
    } else {
        const char *home = env("HOME");
        if (!home) {
            struct passwd *pw = getpwuid(getuid());
            home = (pw && pw->pw_dir && *pw->pw_dir) ? pw->pw_dir : NULL;
        }
        if (!home) {
            mj_warn("no cache directory: HOME and XDG_CACHE_HOME are unset and MOEJIT_CACHE_DIR is not given; "
                    "kernels are kept in memory only");
            ctx->cache_mode = MOEJIT_CACHE_OFF;
            ctx->cache_mode_from = "no HOME, XDG_CACHE_HOME or MOEJIT_CACHE_DIR";
            return MOEJIT_OK;
        }
        snprintf(base, sizeof base, "%s/.cache/moejit", home);
    }
    return absolute_path(base, "cache directory", ctx->cache_dir, sizeof ctx->cache_dir);
}

static moejit_status resolve_config(const moejit_config *cfg, moejit_ctx *ctx)
{
    moejit_status st;
    if (cfg && (st = MJ_CHECK_RESERVED("moejit_config", cfg)) != MOEJIT_OK) return st;
    moejit_log_level level = cfg ? cfg->log_level : MOEJIT_LOG_FROM_ENV;
    if (level == MOEJIT_LOG_FROM_ENV) {
        const char *v = env("MOEJIT_LOG");
        if (v && strcmp(v, "warn") && strcmp(v, "info") && strcmp(v, "debug") && strcmp(v, "silent"))
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "MOEJIT_LOG = \"%s\" must be silent, warn, info or debug", v);
        level = mj_log_parse(v);
    } else if (level < MOEJIT_LOG_SILENT || level > MOEJIT_LOG_DEBUG) {
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_config.log_level = %d is not a moejit_log_level", (int)level);
    }
    mj_log_set_level(level);

    ctx->cache_mode = cfg ? cfg->cache_mode : MOEJIT_CACHE_FROM_ENV;
    ctx->cache_mode_from = "moejit_config.cache_mode";
    if (ctx->cache_mode == MOEJIT_CACHE_FROM_ENV) {
        const char *v = env("MOEJIT_CACHE");
        if (!v || !strcmp(v, "rw")) ctx->cache_mode = MOEJIT_CACHE_RW;
        else if (!strcmp(v, "ro")) ctx->cache_mode = MOEJIT_CACHE_RO, ctx->cache_mode_from = "MOEJIT_CACHE=ro";
        else if (!strcmp(v, "off")) ctx->cache_mode = MOEJIT_CACHE_OFF, ctx->cache_mode_from = "MOEJIT_CACHE=off";
        else return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "MOEJIT_CACHE = \"%s\" must be rw, ro or off", v);
    } else if (ctx->cache_mode < MOEJIT_CACHE_RW || ctx->cache_mode > MOEJIT_CACHE_OFF) {
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_config.cache_mode = %d is not a moejit_cache_mode",
                       (int)ctx->cache_mode);
    }
    if ((st = resolve_cache_dir(cfg, ctx)) != MOEJIT_OK) return st;

    if ((st = env_bool("MOEJIT_NO_COMPILE", &ctx->no_compile)) != MOEJIT_OK) return st;
    if ((st = env_bool("MOEJIT_ALWAYS_COMPILE", &ctx->always_compile)) != MOEJIT_OK) return st;
    if (cfg && cfg->no_compile) ctx->no_compile = 1;
    if (cfg && cfg->always_compile) ctx->always_compile = 1;

    ctx->cache_max_bytes = cfg ? cfg->cache_max_bytes : 0;
    const char *max_bytes = env("MOEJIT_CACHE_MAX_BYTES");
    if (!ctx->cache_max_bytes && max_bytes && mj_parse_size(max_bytes, &ctx->cache_max_bytes) != 0)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "MOEJIT_CACHE_MAX_BYTES = \"%s\" must be a byte count such as 1073741824, 512M or 2G", max_bytes);

    ctx->lock_timeout_ms = cfg ? cfg->cache_lock_timeout_ms : 0;
    const char *lock_ms = env("MOEJIT_CACHE_LOCK_TIMEOUT_MS");
    if (ctx->lock_timeout_ms == 0 && lock_ms) {
        char *end;
        errno = 0;
        const long v = strtol(lock_ms, &end, 10);
        if (errno || *end || end == lock_ms || v < 0 || v > INT_MAX)
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                           "MOEJIT_CACHE_LOCK_TIMEOUT_MS = \"%s\" must be a number of milliseconds (0 disables the lock)",
                           lock_ms);
        ctx->lock_timeout_ms = v ? (int)v : -1;
    }
    if (ctx->lock_timeout_ms == 0) ctx->lock_timeout_ms = MJ_DEFAULT_LOCK_TIMEOUT_MS;
    if (ctx->lock_timeout_ms < 0) ctx->lock_timeout_ms = 0;

    const char *dump = (cfg && cfg->dump_dir && *cfg->dump_dir) ? cfg->dump_dir : env("MOEJIT_DUMP_DIR");
    if (dump && (st = absolute_path(dump, "MOEJIT_DUMP_DIR", ctx->dump_dir, sizeof ctx->dump_dir)) != MOEJIT_OK)
        return st;
    const char *flags = (cfg && cfg->extra_nvrtc_flags) ? cfg->extra_nvrtc_flags : env("MOEJIT_EXTRA_NVRTC_FLAGS");
    if (flags && snprintf(ctx->extra_flags, sizeof ctx->extra_flags, "%s", flags) >= (int)sizeof ctx->extra_flags)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "extra NVRTC flags are longer than %zu bytes", sizeof ctx->extra_flags - 1);

    ctx->device = cfg ? cfg->device : 0;
    if (ctx->device < 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_config.device = %d must be >= 0", ctx->device);
    ctx->compile_jobs = cfg ? cfg->compile_jobs : 0;
    if (ctx->compile_jobs < 0)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_config.compile_jobs = %d must be >= 0", ctx->compile_jobs);
    if (ctx->compile_jobs == 0) {
        /* One NVRTC compile holds a few hundred MB at peak: bound by cores and by memory. */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        long by_memory = (pages > 0 && page > 0) ? (long)((double)pages * (double)page / (512.0 * 1024 * 1024)) : 1;
        long jobs = cores > 0 ? cores : 1;
        if (by_memory < jobs) jobs = by_memory;
        ctx->compile_jobs = jobs < 1 ? 1 : (int)jobs;
    }
    return MOEJIT_OK;
}

moejit_status moejit_open(const moejit_config *cfg, moejit_ctx **out)
{
    mj_error_clear();
    if (!out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_open: out is NULL");
    *out = NULL;
    moejit_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory creating a context");
    static atomic_ullong next_serial = 1;
    ctx->serial = atomic_fetch_add(&next_serial, 1);
    moejit_status st = resolve_config(cfg, ctx);
    if (st == MOEJIT_OK) st = mj_cache_open(ctx->cache_dir, ctx->cache_mode, &ctx->cache);
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
    pthread_mutex_init(&ctx->flight_mu, NULL);
    mj_debug("context: cache %s (%s), %d compile jobs", ctx->cache_dir[0] ? ctx->cache_dir : "off",
             ctx->cache_mode == MOEJIT_CACHE_RW ? "rw" : ctx->cache_mode == MOEJIT_CACHE_RO ? "ro" : "off",
             ctx->compile_jobs);
    *out = ctx;
    return MOEJIT_OK;
}

static void unload_kernel(mj_kernel *k, void *user)
{
    const mj_driver *d = user;
    if (d && k->library) d->library_unload(k->library);
}

void moejit_close(moejit_ctx *ctx)
{
    if (!ctx) return;
    const mj_driver *d = NULL;
    /* Only kernels were loaded if the driver was; asking costs nothing once it is loaded. */
    if (ctx->n_launches || atomic_load(&ctx->retained_primaries) || mj_registry_count(&ctx->registry))
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
    pthread_mutex_destroy(&ctx->flight_mu);
    free(ctx);
}

const char *moejit_ctx_cache_dir(const moejit_ctx *ctx) { return ctx ? mj_cache_root(ctx->cache) : ""; }

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
    while (ctx->jobs_running >= ctx->compile_jobs) pthread_cond_wait(&ctx->jobs_cv, &ctx->jobs_mu);
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

moejit_status moejit_ctx_stats(const moejit_ctx *ctx, moejit_stats *out)
{
    mj_error_clear();
    if (!ctx || !out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_ctx_stats: %s is NULL", ctx ? "out" : "ctx");
    moejit_ctx *c = (moejit_ctx *)ctx; /* counting kernels takes the registry's writer lock */
    out->kernels = mj_registry_count(&c->registry);
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

moejit_status mj_ctx_current_device(moejit_ctx *ctx, const mj_driver *d, CUdevice *dev, int *cc)
{
    int retained;
    moejit_status st = mj_driver_current_device(d, ctx->device, dev, &retained);
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
