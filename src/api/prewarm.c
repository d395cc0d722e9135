/* moejit_prewarm: compile descriptors into the disk cache for explicit archs, in parallel,
 * without a GPU (only the arch == NULL convenience asks the driver). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jit/context.h"
#include "common/error.h"
#include "api/ops.h"
#include "jit/build.h"

typedef struct prewarm_job {
    moejit_ctx *ctx;
    const moejit_kernel_desc *descs;
    size_t n;             /* descriptors */
    const char *const *archs;
    size_t total;         /* n * archs */
    moejit_prewarm_result *results;
    atomic_size_t next;
    pthread_mutex_t progress_mu;
    size_t done;
    moejit_prewarm_fn on_done;
    void *user;
} prewarm_job;

static void build_one(moejit_ctx *ctx, const moejit_kernel_desc *desc, const char *arch, moejit_prewarm_result *res)
{
    mj_kernel_id id;
    res->status = mj_kernel_id_from_desc(desc, &id);
    if (res->status != MOEJIT_OK) return;
    mj_built b;
    res->status = mj_jit_build(ctx, &id, arch, 0, &b);
    snprintf(res->name, sizeof res->name, "%s", b.plan.module);
    memcpy(res->key, b.key_hex, sizeof res->key);
    res->seconds = b.seconds;
    if (res->status == MOEJIT_OK && !b.stored) {
        /* Built but not on disk: prewarm's whole job is the entry, so this kernel failed. */
        const char *root = moejit_ctx_cache_dir(ctx), *why = b.store_error ? b.store_error : "the entry could not be written";
        res->status = root[0] ? mj_fail(MOEJIT_ERR_IO, "compiled, but not stored in the cache %s: %s", root, why)
                              : mj_fail(MOEJIT_ERR_IO, "compiled, but not stored: %s", why);
        res->outcome = MOEJIT_PREWARM_NOT_STORED;
    } else if (res->status == MOEJIT_OK) {
        res->outcome = b.from_disk ? MOEJIT_PREWARM_CACHED : MOEJIT_PREWARM_COMPILED;
    }
    mj_built_free(&b);
}

static void prewarm_one(moejit_ctx *ctx, const moejit_kernel_desc *desc, const char *arch, moejit_prewarm_result *res)
{
    memset(res, 0, sizeof *res);
    snprintf(res->arch, sizeof res->arch, "%s", arch);
    build_one(ctx, desc, arch, res);
    if (res->status == MOEJIT_OK) return;
    /* The detail is thread-local: keep it with the result for the caller's thread. A longer one
     * is cut on a UTF-8 boundary and says so. */
    const char *text = mj_error_text();
    const size_t cap = sizeof res->error, len = strlen(text);
    if (len < cap) {
        memcpy(res->error, text, len + 1);
        return;
    }
    static const char more[] = "…";
    size_t keep = cap - sizeof more;
    while (keep && ((unsigned char)text[keep] & 0xc0) == 0x80) keep--;
    memcpy(res->error, text, keep);
    memcpy(res->error + keep, more, sizeof more);
}

static void *worker(void *arg)
{
    prewarm_job *job = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->total) break;
        prewarm_one(job->ctx, &job->descs[i % job->n], job->archs[i / job->n], &job->results[i]);
        pthread_mutex_lock(&job->progress_mu);
        job->done++;
        if (job->on_done) job->on_done(&job->results[i], i, job->done, job->total, job->user);
        pthread_mutex_unlock(&job->progress_mu);
    }
    return NULL;
}

moejit_status moejit_prewarm_archs(moejit_ctx *ctx, const moejit_kernel_desc *descs, size_t n,
                                   const char *const *archs, size_t n_archs, moejit_prewarm_result *results,
                                   moejit_prewarm_fn on_done, void *user)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_prewarm: ctx is NULL");
    if (n && !descs) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_prewarm: descs is NULL with n = %zu", n);
    if (n_archs && !archs)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_prewarm: archs is NULL with n_archs = %zu", n_archs);
    for (size_t a = 0; a < n_archs; a++)
        if (!archs[a]) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_prewarm: archs[%zu] is NULL", a);
    const size_t total = n * n_archs;
    if (n_archs && total / n_archs != n) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_prewarm: too many kernels");
    moejit_prewarm_result *res = results ? results : calloc(total ? total : 1, sizeof *res);
    if (!res) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "moejit_prewarm: out of memory");

    prewarm_job job = {.ctx = ctx, .descs = descs, .n = n, .archs = archs, .total = total, .results = res,
                       .on_done = on_done, .user = user};
    atomic_init(&job.next, 0);
    pthread_mutex_init(&job.progress_mu, NULL);
    size_t threads = (size_t)ctx->cfg.compile_jobs;
    if (threads > total) threads = total;
    pthread_t tids[256];
    if (threads > 256) threads = 256;
    size_t started = 0;
    for (; started + 1 < threads; started++)
        if (pthread_create(&tids[started], NULL, worker, &job) != 0) break;
    worker(&job); /* the calling thread works too */
    for (size_t i = 0; i < started; i++) pthread_join(tids[i], NULL);
    pthread_mutex_destroy(&job.progress_mu);

    moejit_status first = MOEJIT_OK;
    size_t failed = 0;
    for (size_t i = 0; i < total; i++)
        if (res[i].status != MOEJIT_OK && failed++ == 0) first = res[i].status;
    if (!results) free(res);
    if (failed)
        return mj_fail(first, "moejit_prewarm: %zu of %zu kernels failed (first: %s)", failed, total,
                       moejit_status_str(first));
    return MOEJIT_OK;
}

moejit_status moejit_prewarm(moejit_ctx *ctx, const moejit_kernel_desc *descs, size_t n, const char *arch,
                             moejit_prewarm_result *results)
{
    mj_error_clear();
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_prewarm: ctx is NULL");
    char device_arch[16];
    if (!arch) {
        moejit_status st = moejit_ctx_device_arch(ctx, device_arch, sizeof device_arch);
        if (st != MOEJIT_OK) return st;
        arch = device_arch;
    }
    return moejit_prewarm_archs(ctx, descs, n, &arch, 1, results, NULL, NULL);
}
