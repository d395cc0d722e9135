/* A context's configuration: the moejit_config fields, then the environment (MOEJIT_*), then the
 * defaults; every malformed value is an error naming it. */
#include "jit/config.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/maintenance.h"
#include "common/error.h"
#include "common/log.h"

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

static moejit_status resolve_cache_dir(const moejit_config *cfg, mj_config *ctx)
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

static moejit_status resolve_log(const moejit_config *cfg)
{
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
    return MOEJIT_OK;
}

static moejit_status resolve_cache_mode(const moejit_config *cfg, mj_config *ctx)
{
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
    return MOEJIT_OK;
}

/* The size limit and the per-key lock's timeout. */
static moejit_status resolve_cache_limits(const moejit_config *cfg, mj_config *ctx)
{
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
    return MOEJIT_OK;
}

/* Strict mode, forced compiles, dumps, extra NVRTC flags, the device, the compile jobs. */
static moejit_status resolve_compiles(const moejit_config *cfg, mj_config *ctx)
{
    moejit_status st;
    if ((st = env_bool("MOEJIT_NO_COMPILE", &ctx->no_compile)) != MOEJIT_OK) return st;
    if ((st = env_bool("MOEJIT_ALWAYS_COMPILE", &ctx->always_compile)) != MOEJIT_OK) return st;
    if (cfg && cfg->no_compile) ctx->no_compile = 1;
    if (cfg && cfg->always_compile) ctx->always_compile = 1;

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

/* Programmatic dependent launch: moejit_config.pdl, else MOEJIT_PDL, else on. */
static moejit_status resolve_pdl(const moejit_config *cfg, mj_config *ctx)
{
    const int pdl = cfg ? cfg->pdl : 0;
    if (pdl < 0 || pdl > 2)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT,
                       "moejit_config.pdl = %d must be 0 (the environment), 1 (on) or 2 (off)", pdl);
    if (pdl == 0) {
        ctx->pdl = 1;
        return env_bool("MOEJIT_PDL", &ctx->pdl);
    }
    ctx->pdl = pdl == 1;
    return MOEJIT_OK;
}

moejit_status mj_config_resolve(const moejit_config *cfg, mj_config *ctx)
{
    memset(ctx, 0, sizeof *ctx);
    moejit_status st = cfg ? MJ_CHECK_RESERVED("moejit_config", cfg) : MOEJIT_OK;
    if (st == MOEJIT_OK && cfg)
        st = mj_check_reserved("moejit_config", "reserved0", &cfg->reserved0, 1, sizeof cfg->reserved0);
    if (st == MOEJIT_OK) st = resolve_log(cfg);
    if (st == MOEJIT_OK) st = resolve_cache_mode(cfg, ctx);
    if (st == MOEJIT_OK) st = resolve_cache_dir(cfg, ctx);
    if (st == MOEJIT_OK) st = resolve_cache_limits(cfg, ctx);
    if (st == MOEJIT_OK) st = resolve_compiles(cfg, ctx);
    if (st == MOEJIT_OK) st = resolve_pdl(cfg, ctx);
    return st;
}
