#include "jit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../cache/maintenance.h"
#include "driver.h"
#include "error.h"
#include "key.h"
#include "log.h"
#include "strbuf.h"

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

/* <dir>/<entry>-<first 12 hex of the key>.<ext>: the names of dumped and failed compiles. */
static void artifact_path(char *buf, size_t cap, const char *dir, const char *entry, const char *key_hex, const char *ext)
{
    snprintf(buf, cap, "%s/%s-%.12s.%s", dir, entry, key_hex, ext);
}

/* Write a whole file. 0, or -1 with errno set. */
static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(data, 1, len, f) == len;
    int err = errno;
    if (fclose(f) != 0 && ok) ok = 0, err = errno;
    errno = err;
    return ok ? 0 : -1;
}

/* MOEJIT_DUMP_DIR: <dir>/<entry>-<key>.{cu,log,cubin,options}. Best effort, never fatal.
 * Returns 1 when the source and the log were written. */
static int dump_compile(const moejit_ctx *ctx, const char *entry, const char *key_hex, const char *source,
                        const mj_compile_options *options, const mj_compile_output *out)
{
    if (!ctx->dump_dir[0]) return 0;
    if (mkdir(ctx->dump_dir, 0777) != 0 && errno != EEXIST) {
        mj_warn("MOEJIT_DUMP_DIR = %s: cannot create it: %s", ctx->dump_dir, strerror(errno));
        return 0;
    }
    struct {
        const char *ext;
        const void *data;
        size_t len;
    } files[] = {
        {"cu", source, strlen(source)},
        {"log", out->log ? out->log : "", out->log ? strlen(out->log) : 0},
        {"cubin", out->cubin, out->cubin_len},
        {"options", options->key_text, strlen(options->key_text)},
    };
    int written = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (!files[i].data) continue;
        char path[PATH_MAX + 256];
        artifact_path(path, sizeof path, ctx->dump_dir, entry, key_hex, files[i].ext);
        if (write_file(path, files[i].data, files[i].len) == 0) written += i < 2;
        else mj_warn("MOEJIT_DUMP_DIR: cannot write %s: %s", path, strerror(errno));
    }
    return written == 2;
}

/* The source and log of a failed compile into dir (created if missing). 0, or -1 with the
 * reason in why. */
static int save_into(const char *dir, mode_t mode, const char *entry, const char *key_hex, const char *source,
                     const char *log, char *why, size_t why_cap)
{
    char path[PATH_MAX + 256];
    const char *what = dir;
    if (mj_mkdir_p(dir, mode) == 0) {
        artifact_path(path, sizeof path, dir, entry, key_hex, "cu");
        what = path;
        if (write_file(path, source, strlen(source)) == 0) {
            artifact_path(path, sizeof path, dir, entry, key_hex, "log");
            if (write_file(path, log, strlen(log)) == 0) return 0;
        }
    }
    snprintf(why, why_cap, "%s: %s", what, strerror(errno));
    return -1;
}

/* ${TMPDIR:-/tmp}/moejit-<uid>: ours alone (0700, owned by us, not a link), or -1 with why. */
static int private_tmp_dir(char *dir, size_t cap, char *why, size_t why_cap)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || tmp[0] != '/') tmp = "/tmp";
    snprintf(dir, cap, "%s/moejit-%u", tmp, (unsigned)geteuid());
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(why, why_cap, "%s: %s", dir, strerror(errno));
        return -1;
    }
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
        snprintf(why, why_cap, "%s is not a directory of uid %u", dir, (unsigned)geteuid());
        return -1;
    }
    return 0;
}

/* A failed compile's detail keeps the first errors only: the source and the full NVRTC log go
 * to files whose paths it names — MOEJIT_DUMP_DIR when set (already written by dump_compile),
 * else <cache>/failed/ when the cache is writable, else ${TMPDIR:-/tmp}/moejit-<uid>/failed/. */
static void report_failed_compile(const moejit_ctx *ctx, const char *entry, const char *key_hex, const char *source,
                                  const char *log, int dumped)
{
    char dir[PATH_MAX + 64], why[2 * PATH_MAX] = "";
    int saved = 0;
    if (dumped) {
        snprintf(dir, sizeof dir, "%s", ctx->dump_dir);
        saved = 1;
    }
    if (!saved && mj_cache_writable(ctx->cache)) {
        snprintf(dir, sizeof dir, "%s/failed", mj_cache_root(ctx->cache));
        saved = save_into(dir, 0777, entry, key_hex, source, log, why, sizeof why) == 0;
    }
    if (!saved && private_tmp_dir(dir, sizeof dir - 8, why, sizeof why) == 0) {
        strcat(dir, "/failed");
        saved = save_into(dir, 0700, entry, key_hex, source, log, why, sizeof why) == 0;
    }
    mj_error_append("\nkey: %s", key_hex);
    if (saved) {
        char path[PATH_MAX + 256];
        artifact_path(path, sizeof path, dir, entry, key_hex, "cu");
        mj_error_append("\nsource: %s", path);
        artifact_path(path, sizeof path, dir, entry, key_hex, "log");
        mj_error_append("\nfull log: %s", path);
    } else {
        mj_error_append("\nsource and log not saved: %s", why);
    }
    mj_nvrtc_append_log_excerpt(log, MJ_COMPILE_ERROR_LINES);
}

static moejit_status publish(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, const mj_key *key,
                             const mj_kernel_plan *plan, const char *source, size_t source_len, const mj_built *b)
{
    char shape[512];
    mj_kernel_describe(id, shape, sizeof shape);
    const mj_nvrtc_identity *nv = &ctx->nvrtc_identity; /* located before the key was built */
    mj_strbuf meta;
    mj_sb_init(&meta);
    mj_sb_printf(&meta, "entry=%s\nop=%s\nshape=%s\narch=%s\nnvrtc=%s\n", plan->module, mj_op_name(id->op), shape, arch,
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
    if (!ctx->cache_max_bytes) return;
    mj_cache_gc_stats s;
    if (mj_cache_gc(ctx->cache, ctx->cache_max_bytes, just_published, MJ_CACHE_TEMP_GRACE_SECONDS, NULL, NULL, &s) !=
        MOEJIT_OK)
        mj_warn("MOEJIT_CACHE_MAX_BYTES = %llu: %s", (unsigned long long)ctx->cache_max_bytes, mj_error_text());
    else if (s.entries_removed)
        mj_info("cache over MOEJIT_CACHE_MAX_BYTES = %llu: removed %llu least recently used entries (%llu bytes)",
                (unsigned long long)ctx->cache_max_bytes, (unsigned long long)s.entries_removed,
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
    if (st == MOEJIT_OK) st = mj_compile_options_build(arch, ctx->extra_flags, options);
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
    if (ctx->cache_mode == MOEJIT_CACHE_OFF) {
        if (asprintf(&why, "the disk cache is off (%s)", ctx->cache_mode_from) < 0) why = NULL;
    } else if (ctx->cache_mode == MOEJIT_CACHE_RO) {
        if (asprintf(&why, "the cache is read-only (%s)", ctx->cache_mode_from) < 0) why = NULL;
    } else {
        why = strdup(mj_cache_write_error(ctx->cache));
    }
    return why;
}

/* Disk, then (under the per-key lock, after looking again) NVRTC and publish. */
static moejit_status build_keyed(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, int skip_disk,
                                 const char *source, size_t source_len, const mj_compile_options *options,
                                 const mj_key *key, mj_built *out, double t0)
{
    const int use_disk = !skip_disk && !ctx->always_compile && mj_cache_readable(ctx->cache);
    double t = now_seconds();
    const moejit_status found = use_disk ? load_from_disk(ctx, key, out, 1) : MOEJIT_ERR_NOT_FOUND;
    out->t_disk = now_seconds() - t;
    if (found == MOEJIT_OK) return MOEJIT_OK;

    if (ctx->no_compile) {
        char shape[512];
        mj_kernel_describe(id, shape, sizeof shape);
        return mj_fail(MOEJIT_ERR_CACHE_MISS,
                       "MOEJIT_NO_COMPILE=1 and kernel %s (%s %s, %s) is not in the cache %s: key %s; prewarm it "
                       "with `moejit prewarm --arch %s …` at deployment",
                       out->plan.module, mj_op_name(id->op), shape, arch,
                       ctx->cache_dir[0] ? ctx->cache_dir : "(off)", key->hex, arch);
    }

    /* Another process may be compiling this key into the same cache: wait for it (bounded), then
     * look again. Without the lock (disabled, unavailable, timed out) we compile: a duplicate
     * costs time, never correctness. */
    mj_cache_lock lock = {.fd = -1};
    if (use_disk && mj_cache_lock_key(ctx->cache, key->hex, ctx->lock_timeout_ms, &lock)) {
        if (lock.waited) atomic_fetch_add(&ctx->n_lock_waits, 1);
        t = now_seconds();
        const moejit_status again = load_from_disk(ctx, key, out, 0);
        out->t_disk += now_seconds() - t;
        if (again == MOEJIT_OK) {
            mj_cache_unlock_key(&lock);
            return MOEJIT_OK;
        }
    } else if (lock.timed_out) {
        atomic_fetch_add(&ctx->n_lock_waits, 1);
        atomic_fetch_add(&ctx->n_lock_timeouts, 1);
    } else if (lock.failed) {
        atomic_fetch_add(&ctx->n_lock_failures, 1);
    }

    mj_nvrtc *nv;
    moejit_status st = mj_ctx_nvrtc(ctx, &nv);
    if (st != MOEJIT_OK) {
        mj_cache_unlock_key(&lock);
        return st;
    }
    char program[sizeof out->plan.module + 8];
    snprintf(program, sizeof program, "%s.cu", out->plan.module);
    mj_compile_output co;
    mj_ctx_compile_slot_acquire(ctx);
    t = now_seconds();
    st = mj_nvrtc_compile(nv, source, program, options, &co);
    out->t_nvrtc = now_seconds() - t;
    mj_ctx_compile_slot_release(ctx);
    const int dumped = dump_compile(ctx, out->plan.module, key->hex, source, options, &co);
    if (st != MOEJIT_OK) {
        mj_cache_unlock_key(&lock);
        if (st == MOEJIT_ERR_COMPILE)
            report_failed_compile(ctx, out->plan.module, key->hex, source, co.log ? co.log : "", dumped);
        else
            mj_error_append("\nkey: %s", key->hex);
        mj_compile_output_free(&co);
        return st;
    }
    atomic_fetch_add(&ctx->n_compiles, 1);
    out->cubin = co.cubin;
    out->cubin_len = co.cubin_len;
    co.cubin = NULL;
    mj_compile_output_free(&co);
    mj_debug("compiled %s (%s) in %.0f ms", out->plan.module, key->hex, (now_seconds() - t0) * 1e3);
    t = now_seconds();
    if (!mj_cache_writable(ctx->cache)) {
        out->store_error = why_not_writable(ctx);
    } else if (publish(ctx, id, arch, key, &out->plan, source, source_len, out) == MOEJIT_OK) {
        atomic_fetch_add(&ctx->n_disk_writes, 1);
        out->stored = 1;
    } else {
        out->store_error = strdup(mj_error_text());
    }
    mj_cache_unlock_key(&lock); /* after the publish: a waiter that looks again finds the entry */
    if (out->stored) enforce_size_limit(ctx, key->hex);
    out->t_publish = now_seconds() - t;
    /* A failed publish is not a failed build (launches go on from memory); prewarm, whose job is
     * the disk entry, looks at out->stored. */
    return MOEJIT_OK;
}

/* ---- in-process single flight ---------------------------------------------------------------
 * Threads of one context that need the same key at once build it once: the first (the leader)
 * builds, the others wait for its result and copy it. Keyed by the cache key, so a flight never
 * waits on another key's compile, and the table's mutex is held only to look up and publish. */
typedef struct mj_flight {
    struct mj_flight *next;
    char key_hex[33];
    int refs; /* the leader and its waiters */
    int done;
    pthread_cond_t cv;
    moejit_status status;
    char *error;
    uint8_t *cubin;
    size_t cubin_len;
    int from_disk;
    int stored;
    char *store_error;
} mj_flight;

static void flight_unref(mj_flight *f)
{
    if (--f->refs) return;
    pthread_cond_destroy(&f->cv);
    free(f->error);
    free(f->cubin);
    free(f->store_error);
    free(f);
}

/* Join the flight of key_hex: returns NULL when this thread is to build (a new flight was
 * registered as *leader, or none could be), else the finished flight to copy from (the caller
 * unrefs it under flight_mu). */
static mj_flight *flight_join(moejit_ctx *ctx, const char *key_hex, mj_flight **leader)
{
    *leader = NULL;
    pthread_mutex_lock(&ctx->flight_mu);
    mj_flight *f = ctx->flights;
    while (f && strcmp(f->key_hex, key_hex)) f = f->next;
    if (f) {
        f->refs++;
        while (!f->done) pthread_cond_wait(&f->cv, &ctx->flight_mu);
        pthread_mutex_unlock(&ctx->flight_mu);
        return f;
    }
    f = calloc(1, sizeof *f);
    if (f) {
        memcpy(f->key_hex, key_hex, sizeof f->key_hex);
        f->refs = 1;
        pthread_cond_init(&f->cv, NULL);
        f->next = ctx->flights;
        ctx->flights = f;
        *leader = f;
    }
    pthread_mutex_unlock(&ctx->flight_mu);
    return NULL;
}

/* The leader publishes its result to the waiters and leaves. */
static void flight_land(moejit_ctx *ctx, mj_flight *f, moejit_status st, const mj_built *b)
{
    pthread_mutex_lock(&ctx->flight_mu);
    for (mj_flight **p = &ctx->flights; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next; /* later arrivals start a new flight (and find the entry on disk) */
            break;
        }
    f->status = st;
    if (f->refs > 1) {
        if (st == MOEJIT_OK && (f->cubin = malloc(b->cubin_len ? b->cubin_len : 1))) {
            memcpy(f->cubin, b->cubin, b->cubin_len);
            f->cubin_len = b->cubin_len;
            f->from_disk = b->from_disk;
            f->stored = b->stored;
            f->store_error = b->store_error ? strdup(b->store_error) : NULL; /* NULL: reported generically */
        } else if (st == MOEJIT_OK) {
            f->status = MOEJIT_ERR_OUT_OF_MEMORY;
        }
        if (f->status != MOEJIT_OK) f->error = strdup(st == MOEJIT_OK ? "out of memory" : mj_error_text());
    }
    f->done = 1;
    pthread_cond_broadcast(&f->cv);
    flight_unref(f);
    pthread_mutex_unlock(&ctx->flight_mu);
}

/* A waiter takes the leader's result. */
static moejit_status flight_take(moejit_ctx *ctx, mj_flight *f, mj_built *out)
{
    moejit_status st = f->status;
    if (st == MOEJIT_OK) {
        out->cubin = malloc(f->cubin_len ? f->cubin_len : 1);
        if (out->cubin) {
            memcpy(out->cubin, f->cubin, f->cubin_len);
            out->cubin_len = f->cubin_len;
            out->from_disk = f->from_disk;
            out->stored = f->stored;
            out->store_error = f->store_error ? strdup(f->store_error) : NULL;
        } else {
            st = mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory");
        }
    } else {
        mj_fail(st, "%s", f->error ? f->error : "kernel build failed");
    }
    pthread_mutex_lock(&ctx->flight_mu);
    flight_unref(f);
    pthread_mutex_unlock(&ctx->flight_mu);
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

    /* A forced recompile (the driver rejected a cached image) does not join: it must not take
     * a result that came from the disk entry being replaced. */
    mj_flight *leader = NULL, *joined = skip_disk ? NULL : flight_join(ctx, key.hex, &leader);
    if (joined) {
        st = flight_take(ctx, joined, out);
        goto done;
    }
    st = build_keyed(ctx, id, arch, skip_disk, source, source_len, &options, &key, out, t0);
    if (leader) flight_land(ctx, leader, st, out);

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

/* ---- the launch path ------------------------------------------------------------------------ */

static int image_rejected(CUresult r)
{
    return r == CUDA_ERROR_INVALID_IMAGE || r == CUDA_ERROR_NO_BINARY_FOR_GPU || r == CUDA_ERROR_INVALID_PTX ||
           r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION || r == CUDA_ERROR_INVALID_SOURCE;
}

/* Build and load one registry node (called by the single thread that owns the build). */
static moejit_status build_and_load(moejit_ctx *ctx, const mj_driver *d, mj_kernel *k)
{
    char arch[16];
    mj_arch_for_cc(k->lookup.cc, arch, sizeof arch);
    mj_built b;
    moejit_status st = mj_jit_build(ctx, &k->lookup.id, arch, 0, &b);
    if (st != MOEJIT_OK) return st;
    CUresult r = d->library_load_data(&k->library, b.cubin, NULL, NULL, 0, NULL, NULL, 0);
    if (r != CUDA_SUCCESS && b.from_disk && image_rejected(r)) {
        /* The entry verified but the driver refuses its image: treat it as bad, compile once. */
        atomic_fetch_add(&ctx->n_bad_entries, 1);
        mj_warn("driver rejected the cached cubin of %s (%s): recompiling", b.plan.module, b.key_hex);
        if (mj_cache_writable(ctx->cache)) mj_cache_remove(ctx->cache, b.key_hex);
        mj_built_free(&b);
        st = mj_jit_build(ctx, &k->lookup.id, arch, 1, &b);
        if (st != MOEJIT_OK) return st;
        r = d->library_load_data(&k->library, b.cubin, NULL, NULL, 0, NULL, NULL, 0);
    }
    if (r != CUDA_SUCCESS) {
        st = mj_cuda_fail(d, r, "cuLibraryLoadData", b.plan.module);
        mj_built_free(&b);
        return st;
    }
    for (int i = 0; i < b.plan.n_entries; i++) {
        r = d->library_get_kernel(&k->kernels[i], k->library, b.plan.entry[i].name);
        if (r != CUDA_SUCCESS) {
            st = mj_cuda_fail(d, r, "cuLibraryGetKernel", b.plan.entry[i].name);
            d->library_unload(k->library);
            k->library = NULL;
            mj_built_free(&b);
            return st;
        }
    }
    k->plan = b.plan;
    memcpy(k->key_hex, b.key_hex, sizeof k->key_hex);
    mj_built_free(&b);
    return MOEJIT_OK;
}

/* Errors that will not change by trying again: keep returning them without recompiling. */
static int permanent(moejit_status st)
{
    return st == MOEJIT_ERR_COMPILE || st == MOEJIT_ERR_UNSUPPORTED || st == MOEJIT_ERR_INVALID_SPEC;
}

static moejit_status node_error(const mj_kernel *k)
{
    return mj_fail(k->error_status, "%s", k->error_text ? k->error_text : "kernel build failed");
}

static moejit_status build_node(moejit_ctx *ctx, const mj_driver *d, mj_kernel *k)
{
    moejit_status st = build_and_load(ctx, d, k);
    pthread_mutex_lock(&k->mu);
    free(k->error_text);
    k->error_text = st == MOEJIT_OK ? NULL : strdup(mj_error_text());
    k->error_status = st;
    atomic_store_explicit(&k->state, st == MOEJIT_OK ? MJ_KERNEL_READY : MJ_KERNEL_FAILED, memory_order_release);
    pthread_cond_broadcast(&k->cv);
    pthread_mutex_unlock(&k->mu);
    return st;
}

/* First use of a (shape, device arch): single flight. */
static moejit_status slow_path(moejit_ctx *ctx, const mj_driver *d, const mj_lookup_key *lk, uint64_t hash,
                               mj_kernel **out)
{
    int created;
    mj_kernel *k = mj_registry_insert(&ctx->registry, lk, hash, &created);
    if (!k) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory registering a kernel");
    if (!created) {
        pthread_mutex_lock(&k->mu);
        while (atomic_load(&k->state) == MJ_KERNEL_PENDING) pthread_cond_wait(&k->cv, &k->mu);
        int state = atomic_load(&k->state);
        if (state == MJ_KERNEL_FAILED && !permanent(k->error_status)) {
            atomic_store(&k->state, MJ_KERNEL_PENDING); /* this thread retries the build */
            created = 1;
        }
        moejit_status st = state == MJ_KERNEL_READY ? MOEJIT_OK : node_error(k);
        pthread_mutex_unlock(&k->mu);
        if (!created) {
            *out = k;
            return st;
        }
    }
    *out = k;
    return build_node(ctx, d, k);
}

/* Large dynamic shared memory must be allowed per device, once. */
static moejit_status prepare_device(const mj_driver *d, mj_kernel *k, CUdevice dev)
{
    const unsigned long long bit = 1ull << (unsigned)dev;
    if (atomic_load_explicit(&k->devices_ready, memory_order_acquire) & bit) return MOEJIT_OK;
    for (int i = 0; i < k->plan.n_entries; i++) {
        const mj_entry_plan *e = &k->plan.entry[i];
        if (e->smem_bytes <= 48 * 1024) continue;
        CUresult r = d->kernel_set_attribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, e->smem_bytes,
                                             k->kernels[i], dev);
        if (r != CUDA_SUCCESS) return mj_cuda_fail(d, r, "cuKernelSetAttribute(max dynamic shared memory)", e->name);
    }
    atomic_fetch_or(&k->devices_ready, bit);
    return MOEJIT_OK;
}

moejit_status mj_jit_kernel(moejit_ctx *ctx, const mj_kernel_id *id, const mj_kernel **out)
{
    const mj_driver *d;
    moejit_status st = mj_driver_get(&d);
    if (st != MOEJIT_OK) return st;
    CUdevice dev;
    int cc;
    st = mj_ctx_current_device(ctx, d, &dev, &cc);
    if (st != MOEJIT_OK) return st;

    mj_lookup_key lk;
    memset(&lk, 0, sizeof lk);
    lk.id = *id;
    lk.cc = cc;
    const uint64_t hash = mj_lookup_hash(&lk);
    mj_kernel *k = mj_registry_find(&ctx->registry, &lk, hash);
    if (!k || atomic_load_explicit(&k->state, memory_order_acquire) != MJ_KERNEL_READY) {
        st = slow_path(ctx, d, &lk, hash, &k);
        if (st != MOEJIT_OK) return st;
    }
    st = prepare_device(d, k, dev);
    *out = k;
    return st;
}
