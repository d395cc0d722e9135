/* moejit_prewarm: compile descriptors into the disk cache for an explicit arch, in parallel,
 * without a GPU (only the arch == NULL convenience asks the driver). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "error.h"
#include "jit.h"

typedef struct prewarm_job {
    moejit_ctx *ctx;
    const moejit_kernel_desc *descs;
    size_t n;
    const char *arch;
    moejit_prewarm_result *results;
    atomic_size_t next;
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
    if (res->status == MOEJIT_OK) res->outcome = b.from_disk ? MOEJIT_PREWARM_CACHED : MOEJIT_PREWARM_COMPILED;
    mj_built_free(&b);
}

static void prewarm_one(moejit_ctx *ctx, const moejit_kernel_desc *desc, const char *arch, moejit_prewarm_result *res)
{
    memset(res, 0, sizeof *res);
    build_one(ctx, desc, arch, res);
    /* The detail is thread-local: keep it with the result for the caller's thread. */
    if (res->status != MOEJIT_OK) snprintf(res->error, sizeof res->error, "%s", mj_error_text());
}

static void *worker(void *arg)
{
    prewarm_job *job = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->n) break;
        prewarm_one(job->ctx, &job->descs[i], job->arch, &job->results[i]);
    }
    return NULL;
}

moejit_status moejit_prewarm(moejit_ctx *ctx, const moejit_kernel_desc *descs, size_t n, const char *arch,
                             moejit_prewarm_result *results)
{
    if (!ctx) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_prewarm: ctx is NULL");
    if (n && !descs) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_prewarm: descs is NULL with n = %zu", n);
    char device_arch[16];
    if (!arch) {
        moejit_status st = moejit_device_arch(ctx, device_arch, sizeof device_arch);
        if (st != MOEJIT_OK) return st;
        arch = device_arch;
    }
    moejit_prewarm_result *res = results ? results : calloc(n ? n : 1, sizeof *res);
    if (!res) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "moejit_prewarm: out of memory");

    prewarm_job job = {.ctx = ctx, .descs = descs, .n = n, .arch = arch, .results = res};
    atomic_init(&job.next, 0);
    size_t threads = (size_t)ctx->compile_jobs;
    if (threads > n) threads = n;
    pthread_t tids[256];
    if (threads > 256) threads = 256;
    size_t started = 0;
    for (; started + 1 < threads; started++)
        if (pthread_create(&tids[started], NULL, worker, &job) != 0) break;
    worker(&job); /* the calling thread works too */
    for (size_t i = 0; i < started; i++) pthread_join(tids[i], NULL);

    moejit_status first = MOEJIT_OK;
    size_t failed = 0;
    for (size_t i = 0; i < n; i++)
        if (res[i].status != MOEJIT_OK && failed++ == 0) first = res[i].status;
    if (!results) free(res);
    if (failed)
        return mj_fail(first, "moejit_prewarm: %zu of %zu kernels failed (first: %s)", failed, n, moejit_status_str(first));
    return MOEJIT_OK;
}
