#include "jit/build.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/maintenance.h"
#include "jit/artifacts.h"
#include "jit/codegen.h"
#include "jit/flight.h"
#include "jit/driver.h"
#include "common/error.h"
#include "jit/key.h"
#include "common/log.h"
#include "common/strbuf.h"

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void mj_built_free(mj_built *b)
{
    free(b->cubin);
    free(b->store_error);
    memset(b, 0, sizeof *b);
}

static moejit_status publish(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, const mj_key *key,
                             const mj_kernel_plan *plan, const char *source, size_t source_len, const mj_built *b)
{
    char shape[512];
    mj_kernel_describe(id, shape, sizeof shape);
    const mj_nvrtc_identity *nv = &ctx->nvrtc_identity; /* located before the key was built */
    mj_strbuf meta;
    mj_sb_init(&meta);
    mj_sb_printf(&meta, "entry=%s\nop=%s\nshape=%s\narch=%s\nnvrtc=%s\n", plan->module, id->op->name, shape, arch,
                 nv->version);
    for (int i = 0; i < plan->n_entries; i++)
        mj_sb_printf(&meta, "kernel=%s threads=%d smem=%d\n", plan->entry[i].name, plan->entry[i].threads,
                     plan->entry[i].smem_bytes);
    if (!mj_sb_ok(&meta)) {
        mj_sb_free(&meta);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    mj_entry_view view = {
        .key_record = key->record,
        .key_record_len = key->record_len,
        .meta = meta.data,
        .meta_len = meta.len,
        .source = source,
        .source_len = source_len,
        .cubin = b->cubin,
        .cubin_len = b->cubin_len,
        .created = (uint64_t)time(NULL),
    };
    moejit_status st = mj_cache_publish(ctx->cache, key->hex, &view);
    mj_sb_free(&meta);
    return st;
}

/* MOEJIT_CACHE_MAX_BYTES is enforced right after each publish — the only time the cache grows —
 * by evicting the least recently used entries (never the one just written). A directory scan
 * costs far less than the compile that preceded it. Failures only warn: the kernel is built. */
static void enforce_size_limit(moejit_ctx *ctx, const char *just_published)
{
    if (!ctx->cfg.cache_max_bytes) return;
    mj_cache_gc_stats s;
    if (mj_cache_gc(ctx->cache, ctx->cfg.cache_max_bytes, just_published, MJ_CACHE_TEMP_GRACE_SECONDS, NULL, NULL, &s) !=
        MOEJIT_OK)
        mj_warn("MOEJIT_CACHE_MAX_BYTES = %llu: %s", (unsigned long long)ctx->cfg.cache_max_bytes, mj_error_text());
    else if (s.entries_removed)
        mj_info("cache over MOEJIT_CACHE_MAX_BYTES = %llu: removed %llu least recently used entries (%llu bytes)",
                (unsigned long long)ctx->cfg.cache_max_bytes, (unsigned long long)s.entries_removed,
                (unsigned long long)s.bytes_removed);
}

/* A verified entry must also be the kernel we asked for (the key record already guarantees it
 * unless the file was crafted; this check is cheap). */
static int entry_matches(const mj_cache_blob *blob, const mj_kernel_plan *plan)
{
    char module[sizeof plan->module];
    return mj_meta_get(blob->view.meta, blob->view.meta_len, "entry", module, sizeof module) &&
           !strcmp(module, plan->module) && blob->view.cubin_len > 0;
}

/* Look the key up on disk. MOEJIT_OK fills out->cubin (a disk hit); anything else is a miss
 * (a bad entry was removed and counted; the miss too, unless this is the second look of one
 * lookup, under the lock). */
static moejit_status load_from_disk(moejit_ctx *ctx, const mj_key *key, mj_built *out, int count_miss)
{
    mj_cache_blob blob;
    moejit_status st = mj_cache_load(ctx->cache, key->hex, key->record, key->record_len, &blob);
    if (st == MOEJIT_OK && !entry_matches(&blob, &out->plan)) {
        mj_cache_remove_if_same(ctx->cache, key->hex, &blob);
        mj_cache_blob_free(&blob);
        st = mj_fail(MOEJIT_ERR_CORRUPT, "entry %s does not hold kernel %s", key->hex, out->plan.module);
    }
    if (st == MOEJIT_OK) {
        out->cubin = malloc(blob.view.cubin_len);
        if (out->cubin) {
            memcpy(out->cubin, blob.view.cubin, blob.view.cubin_len);
            out->cubin_len = blob.view.cubin_len;
            out->from_disk = 1;
            out->stored = 1;
            atomic_fetch_add(&ctx->n_disk_hits, 1);
            mj_debug("disk hit %s (%s)", out->plan.module, key->hex);
        } else {
            st = mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory");
        }
        mj_cache_blob_free(&blob);
        return st;
    }
    if (st == MOEJIT_ERR_CORRUPT) {
        atomic_fetch_add(&ctx->n_bad_entries, 1);
        mj_info("bad cache entry replaced: %s", mj_error_text());
    }
    if (count_miss) atomic_fetch_add(&ctx->n_disk_misses, 1);
    return st;
}

/* codegen → options → key; the time of each step into out (may be NULL). */
static moejit_status prepare(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, mj_kernel_plan *plan,
                             char **source, size_t *source_len, mj_compile_options *options, mj_key *key, mj_built *out)
{
    const mj_nvrtc_identity *nv_id;
    double t = now_seconds();
    moejit_status st = mj_codegen(id, plan, source, source_len);
    if (out) out->t_codegen = now_seconds() - t, t = now_seconds();
    if (st == MOEJIT_OK) st = mj_compile_options_build(arch, ctx->cfg.extra_flags, options);
    if (st == MOEJIT_OK) st = mj_ctx_nvrtc_identity(ctx, &nv_id);
    if (st == MOEJIT_OK) st = mj_key_build(*source, *source_len, options, arch, nv_id, key);
    if (out) out->t_key = now_seconds() - t;
    return st;
}

moejit_status mj_jit_key(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, mj_kernel_plan *plan, mj_key *key)
{
    char *source = NULL;
    size_t source_len = 0;
    mj_compile_options options;
    memset(key, 0, sizeof *key);
    moejit_status st = prepare(ctx, id, arch, plan, &source, &source_len, &options, key, NULL);
    free(source);
    if (st != MOEJIT_OK) mj_key_free(key);
    return st;
}

/* Why nothing is written to the cache (the store says not writable), malloc'ed (NULL: out of memory). */
static char *why_not_writable(const moejit_ctx *ctx)
{
    char *why = NULL;
    if (ctx->cfg.cache_mode == MOEJIT_CACHE_OFF) {
        if (asprintf(&why, "the disk cache is off (%s)", ctx->cfg.cache_mode_from) < 0) why = NULL;
    } else if (ctx->cfg.cache_mode == MOEJIT_CACHE_RO) {
        if (asprintf(&why, "the cache is read-only (%s)", ctx->cfg.cache_mode_from) < 0) why = NULL;
    } else {
        why = strdup(mj_cache_write_error(ctx->cache));
    }
    return why;
}

/* Disk, then (under the per-key lock, after looking again) NVRTC and publish. */
/* strict mode's miss: the kernel, its shape and key, and how to prewarm it. */
static moejit_status strict_miss(const moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, const mj_key *key,
                                 const mj_built *out)
{
    char shape[512];
    mj_kernel_describe(id, shape, sizeof shape);
    return mj_fail(MOEJIT_ERR_CACHE_MISS,
                   "MOEJIT_NO_COMPILE=1 and kernel %s (%s %s, %s) is not in the cache %s: key %s; prewarm it "
                   "with `moejit prewarm --arch %s …` at deployment",
                   out->plan.module, id->op->name, shape, arch, ctx->cfg.cache_dir[0] ? ctx->cfg.cache_dir : "(off)",
                   key->hex, arch);
}

/* Another process may be compiling this key into the same cache: wait for its per-key lock
 * (bounded), then look again. Returns 1 when that look found the entry (the lock is released);
 * else the caller compiles — holding the lock, or without it (disabled, unavailable, timed out:
 * a duplicate compile costs time, never correctness). */
static int lock_and_look_again(moejit_ctx *ctx, const mj_key *key, mj_built *out, mj_cache_lock *lock)
{
    if (mj_cache_lock_key(ctx->cache, key->hex, ctx->cfg.lock_timeout_ms, lock)) {
        if (lock->waited) atomic_fetch_add(&ctx->n_lock_waits, 1);
        const double t = now_seconds();
        const moejit_status again = load_from_disk(ctx, key, out, 0);
        out->t_disk += now_seconds() - t;
        if (again != MOEJIT_OK) return 0;
        mj_cache_unlock_key(lock);
        return 1;
    }
    if (lock->timed_out) {
        atomic_fetch_add(&ctx->n_lock_waits, 1);
        atomic_fetch_add(&ctx->n_lock_timeouts, 1);
    } else if (lock->failed) {
        atomic_fetch_add(&ctx->n_lock_failures, 1);
    }
    return 0;
}

/* NVRTC, in one of the context's compile slots; the cubin into out. A failed compile's source
 * and log go to files its detail names. */
static moejit_status compile(moejit_ctx *ctx, const char *source, const mj_compile_options *options, const mj_key *key,
                             mj_built *out)
{
    mj_nvrtc *nv;
    moejit_status st = mj_ctx_nvrtc(ctx, &nv);
    if (st != MOEJIT_OK) return st;
    char program[sizeof out->plan.module + 8];
    snprintf(program, sizeof program, "%s.cu", out->plan.module);
    mj_compile_output co;
    mj_ctx_compile_slot_acquire(ctx);
    const double t = now_seconds();
    st = mj_nvrtc_compile(nv, source, program, options, &co);
    out->t_nvrtc = now_seconds() - t;
    mj_ctx_compile_slot_release(ctx);
    const int dumped = mj_dump_compile(ctx, out->plan.module, key->hex, source, options, &co);
    if (st == MOEJIT_ERR_COMPILE)
        mj_report_failed_compile(ctx, out->plan.module, key->hex, source, co.log ? co.log : "", dumped);
    else if (st != MOEJIT_OK)
        mj_error_append("\nkey: %s", key->hex);
    if (st == MOEJIT_OK) {
        atomic_fetch_add(&ctx->n_compiles, 1);
        out->cubin = co.cubin;
        out->cubin_len = co.cubin_len;
        co.cubin = NULL;
    }
    mj_compile_output_free(&co);
    return st;
}

/* Store a fresh cubin. A failed publish is not a failed build (launches go on from memory);
 * prewarm, whose job is the disk entry, looks at out->stored and out->store_error. */
static void store(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, const mj_key *key, const char *source,
                  size_t source_len, mj_built *out)
{
    if (!mj_cache_writable(ctx->cache)) {
        out->store_error = why_not_writable(ctx);
    } else if (publish(ctx, id, arch, key, &out->plan, source, source_len, out) == MOEJIT_OK) {
        atomic_fetch_add(&ctx->n_disk_writes, 1);
        out->stored = 1;
    } else {
        out->store_error = strdup(mj_error_text());
    }
}

/* Disk, then (under the per-key lock, after looking again) NVRTC and publish. */
static moejit_status build_keyed(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, int skip_disk,
                                 const char *source, size_t source_len, const mj_compile_options *options,
                                 const mj_key *key, mj_built *out, double t0)
{
    const int use_disk = !skip_disk && !ctx->cfg.always_compile && mj_cache_readable(ctx->cache);
    double t = now_seconds();
    const moejit_status found = use_disk ? load_from_disk(ctx, key, out, 1) : MOEJIT_ERR_NOT_FOUND;
    out->t_disk = now_seconds() - t;
    if (found == MOEJIT_OK) return MOEJIT_OK;
    if (ctx->cfg.no_compile) return strict_miss(ctx, id, arch, key, out);

    mj_cache_lock lock = {.fd = -1};
    if (use_disk && lock_and_look_again(ctx, key, out, &lock)) return MOEJIT_OK;
    moejit_status st = compile(ctx, source, options, key, out);
    if (st == MOEJIT_OK) {
        mj_debug("compiled %s (%s) in %.0f ms", out->plan.module, key->hex, (now_seconds() - t0) * 1e3);
        t = now_seconds();
        store(ctx, id, arch, key, source, source_len, out);
    }
    mj_cache_unlock_key(&lock); /* after the publish: a waiter that looks again finds the entry */
    if (out->stored) enforce_size_limit(ctx, key->hex);
    out->t_publish = now_seconds() - t;
    return st;
}

/* A flight's value for its waiters: the leader's mj_built, its cubin's bytes, then its store
 * error (a string, when it has one). */
static void land_built(moejit_ctx *ctx, mj_flight *f, moejit_status st, const mj_built *b)
{
    const size_t why = b->store_error ? strlen(b->store_error) + 1 : 0;
    uint8_t *value = NULL;
    size_t len = 0;
    if (st == MOEJIT_OK && (value = malloc(sizeof *b + b->cubin_len + why))) {
        memcpy(value, b, sizeof *b);
        memcpy(value + sizeof *b, b->cubin, b->cubin_len);
        if (why) memcpy(value + sizeof *b + b->cubin_len, b->store_error, why);
        len = sizeof *b + b->cubin_len + why;
    } else if (st == MOEJIT_OK) {
        st = mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory");
    }
    mj_flight_land(&ctx->flights, f, st, value, len);
    free(value);
}

/* A waiter takes its own copy of the leader's result. */
static moejit_status take_built(moejit_ctx *ctx, mj_flight *f, mj_built *out)
{
    const void *value;
    size_t len;
    moejit_status st = mj_flight_result(f, &value, &len);
    if (st == MOEJIT_OK) {
        mj_built leader;
        memcpy(&leader, value, sizeof leader); /* its pointers are the leader's: only sizes and flags */
        const uint8_t *cubin = (const uint8_t *)value + sizeof leader;
        out->from_disk = leader.from_disk;
        out->stored = leader.stored;
        out->cubin = malloc(leader.cubin_len ? leader.cubin_len : 1);
        if (leader.store_error) out->store_error = strdup((const char *)cubin + leader.cubin_len);
        if (out->cubin) {
            memcpy(out->cubin, cubin, leader.cubin_len);
            out->cubin_len = leader.cubin_len;
        } else {
            st = mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory");
        }
    }
    mj_flight_leave(&ctx->flights, f);
    atomic_fetch_add(&ctx->n_build_waits, 1);
    return st;
}

moejit_status mj_jit_build(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, int skip_disk, mj_built *out)
{
    memset(out, 0, sizeof *out);
    const double t0 = now_seconds();
    char *source = NULL;
    size_t source_len = 0;
    mj_key key = {0};
    mj_compile_options options;

    moejit_status st = prepare(ctx, id, arch, &out->plan, &source, &source_len, &options, &key, out);
    if (st != MOEJIT_OK) goto done;
    memcpy(out->key_hex, key.hex, sizeof out->key_hex);

    /* Threads of this context building the same key at once build it once. A forced recompile
     * (the driver rejected a cached image) does not join: it must not take a result that came
     * from the disk entry being replaced. */
    mj_flight *leader = NULL, *joined = skip_disk ? NULL : mj_flight_join(&ctx->flights, key.hex, sizeof key.hex, &leader);
    if (joined) {
        st = take_built(ctx, joined, out);
        goto done;
    }
    st = build_keyed(ctx, id, arch, skip_disk, source, source_len, &options, &key, out, t0);
    if (leader) land_built(ctx, leader, st, out);

done:
    out->seconds = now_seconds() - t0;
    if (st != MOEJIT_OK) {
        free(out->cubin);
        out->cubin = NULL;
        out->cubin_len = 0;
    }
    mj_key_free(&key);
    free(source);
    return st;
}
