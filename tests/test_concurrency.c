/* Many processes and threads on one cache (issue 8): 16 forked processes racing on one cold key
 * and on 50 keys, in a regular directory and on a tmpfs, with the per-key lock (each key compiled
 * once) and without it (duplicates allowed, nothing breaks); 32 threads on 20 shapes in one
 * context and in two (one compile per key, bounded wait). Every process and thread gets the
 * kernel of its key, the cache ends with exactly one verified entry per key and no temp file.
 * CPU only (NVRTC); the GPU variant of the thread test is in test_gpu_concurrency.c. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/fault.h"
#include "common/hash.h"
#include "jit/build.h"
#include "jit/key.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"
#include "cache/store.h"
#include "stress.h"

#define ARCH "sm_90a"
enum { MAX_KEYS = 64, MAX_PROCS = 16 };

/* Kernel k of a family of small, quick-to-compile kernels (about 70 ms each): route kernels of
 * several shapes and dtypes, and permute/combine kernels. */
static moejit_kernel_desc small_kernel(int k, int salt)
{
    moejit_kernel_desc d;
    memset(&d, 0, sizeof d);
    if (k % 5 == 3) {
        d.op = MOEJIT_OP_PERMUTE;
        d.permute.hidden = 8 + k + 64 * salt;
        d.permute.dtype = (moejit_dtype)(k % 3);
    } else if (k % 5 == 4) {
        d.op = MOEJIT_OP_COMBINE;
        d.combine.hidden = 8 + k + 64 * salt;
        d.combine.dtype = (moejit_dtype)(k % 3);
    } else {
        d.op = MOEJIT_OP_ROUTE;
        d.route.num_experts = 8 + k + 64 * salt;
        d.route.topk = 1 + k % 4;
        d.route.dtype = (moejit_dtype)(k % 3);
        d.route.score = (moejit_score)(k % 2);
    }
    return d;
}

/* The keys those kernels have, computed without compiling. */
static void expected_keys(const moejit_kernel_desc *descs, int n, char (*keys)[33])
{
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    for (int i = 0; i < n; i++) {
        mj_kernel_id id;
        mj_kernel_plan plan;
        mj_key key;
        assert_int_equal(mj_kernel_id_from_desc(&descs[i], &id), MOEJIT_OK);
        assert_int_equal(mj_jit_key(ctx, &id, ARCH, &plan, &key), MOEJIT_OK);
        memcpy(keys[i], key.hex, 33);
        mj_key_free(&key);
    }
    moejit_close(ctx);
}

/* XXH3-64 of the cubin in key's entry (0 if it does not load and verify with its record). */
static uint64_t entry_cubin_hash(const char *dir, const moejit_kernel_desc *desc, const char *key_hex)
{
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    mj_kernel_id id;
    mj_kernel_plan plan;
    mj_key key;
    assert_int_equal(mj_kernel_id_from_desc(desc, &id), MOEJIT_OK);
    assert_int_equal(mj_jit_key(ctx, &id, ARCH, &plan, &key), MOEJIT_OK);
    assert_string_equal(key.hex, key_hex);
    mj_cache *c;
    assert_int_equal(mj_cache_open(dir, MOEJIT_CACHE_RO, &c), MOEJIT_OK);
    mj_cache_blob blob;
    uint64_t h = 0;
    if (mj_cache_load(c, key.hex, key.record, key.record_len, &blob) == MOEJIT_OK) {
        h = XXH3_64bits(blob.view.cubin, blob.view.cubin_len);
        mj_cache_blob_free(&blob);
    }
    mj_cache_close(c);
    mj_key_free(&key);
    moejit_close(ctx);
    return h;
}

/* ---- processes ---------------------------------------------------------------------------- */

typedef struct child_report {
    int ok;
    char why[512];
    uint64_t compiles, disk_hits, disk_writes, lock_waits, lock_timeouts, lock_failures;
    uint64_t cubin_hash[MAX_KEYS];
} child_report;

typedef struct race {
    char dir[4096];
    int nprocs, nkeys;
    int lock_timeout_ms; /* moejit_config.cache_lock_timeout_ms: > 0, or < 0 for no lock */
    int lock_fault;      /* the lock fails with ENOLCK in every child */
    moejit_kernel_desc descs[MAX_KEYS];
    char keys[MAX_KEYS][33];
    child_report rep[MAX_PROCS];
} race;

static int child_fail(child_report *rep, const char *what, int k, moejit_status st)
{
    snprintf(rep->why, sizeof rep->why, "%s (kernel %d): %s: %s", what, k, moejit_status_str(st), moejit_last_error(NULL));
    return 1;
}

/* One process: build every kernel, starting at its own offset so compiles spread out. */
static int race_child(int index, void *user)
{
    race *r = user;
    child_report *rep = &r->rep[index];
    if (r->lock_fault) mj_fault_fail(MJ_FAULT_LOCK, ENOLCK, 1);
    moejit_config cfg = {.cache_dir = r->dir, .compile_jobs = 1, .cache_lock_timeout_ms = r->lock_timeout_ms,
                         .log_level = MOEJIT_LOG_SILENT};
    moejit_ctx *ctx;
    moejit_status st = moejit_open(&cfg, &ctx);
    if (st != MOEJIT_OK) return child_fail(rep, "moejit_open", -1, st);
    for (int j = 0; j < r->nkeys; j++) {
        const int k = (j + index * r->nkeys / r->nprocs) % r->nkeys;
        mj_kernel_id id;
        mj_built b;
        if ((st = mj_kernel_id_from_desc(&r->descs[k], &id)) != MOEJIT_OK) return child_fail(rep, "descriptor", k, st);
        if ((st = mj_jit_build(ctx, &id, ARCH, 0, &b)) != MOEJIT_OK) return child_fail(rep, "build", k, st);
        if (strcmp(b.key_hex, r->keys[k])) {
            char want[33];
            memcpy(want, r->keys[k], sizeof want);
            snprintf(rep->why, sizeof rep->why, "kernel %d: key %s, expected %s", k, b.key_hex, want);
            return 1;
        }
        if (b.cubin_len < 4 || memcmp(b.cubin, "\x7f" "ELF", 4)) {
            snprintf(rep->why, sizeof rep->why, "kernel %d: the %zu-byte cubin is not ELF", k, b.cubin_len);
            return 1;
        }
        rep->cubin_hash[k] = XXH3_64bits(b.cubin, b.cubin_len);
        mj_built_free(&b);
    }
    moejit_stats s;
    moejit_ctx_stats(ctx, &s);
    rep->compiles = s.compiles, rep->disk_hits = s.disk_hits, rep->disk_writes = s.disk_writes;
    rep->lock_waits = s.lock_waits, rep->lock_timeouts = s.lock_timeouts, rep->lock_failures = s.lock_failures;
    moejit_close(ctx);
    rep->ok = 1;
    return 0;
}

/* Race nprocs processes on nkeys cold kernels in dir and check everything issue 8 asks. */
static void run_race(const char *what, const char *dir, int nprocs, int nkeys, int salt, int lock_timeout_ms,
                     int lock_fault)
{
    race *r = mjt_shared_alloc(sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    r->nprocs = nprocs, r->nkeys = nkeys, r->lock_timeout_ms = lock_timeout_ms, r->lock_fault = lock_fault;
    for (int k = 0; k < nkeys; k++) r->descs[k] = small_kernel(k, salt);
    expected_keys(r->descs, nkeys, r->keys);

    const double t0 = mjt_now();
    int status[MAX_PROCS], late;
    const int failed = mjt_fork_children(nprocs, race_child, r, 600, status, &late);
    const double wall = mjt_now() - t0;
    if (late) fail_msg("%s: %d processes still running after 600 s (deadlock?)", what, late);
    for (int i = 0; i < nprocs; i++)
        if (status[i] != 0 || !r->rep[i].ok)
            fail_msg("%s: process %d: exit %d: %s", what, i, status[i], r->rep[i].why);
    assert_int_equal(failed, 0);

    uint64_t compiles = 0, hits = 0, writes = 0, waits = 0, timeouts = 0, lock_failures = 0;
    for (int i = 0; i < nprocs; i++) {
        compiles += r->rep[i].compiles, hits += r->rep[i].disk_hits, writes += r->rep[i].disk_writes;
        waits += r->rep[i].lock_waits, timeouts += r->rep[i].lock_timeouts, lock_failures += r->rep[i].lock_failures;
    }
    /* exactly one verified entry per key, holding the cubin every process got; no temp file */
    mjt_cache_census cs;
    mjt_cache_census_of(dir, &cs);
    if (cs.entries != nkeys || cs.temps != 0 || cs.bad != 0)
        fail_msg("%s: %d entries for %d keys, %d temp files, %d failing verify", what, cs.entries, nkeys, cs.temps, cs.bad);
    int lost = 0;
    for (int k = 0; k < nkeys; k++) {
        const uint64_t h = entry_cubin_hash(dir, &r->descs[k], r->keys[k]);
        if (!h) lost++;
        for (int i = 0; i < nprocs; i++)
            if (r->rep[i].cubin_hash[k] != h)
                fail_msg("%s: process %d got another cubin for kernel %d than the entry holds", what, i, k);
    }
    assert_int_equal(lost, 0);
    if (lock_timeout_ms > 0 && !lock_fault) {
        /* with the lock: each key compiled once in all */
        if (compiles != (uint64_t)nkeys)
            fail_msg("%s: %llu compiles for %d keys (lock timeouts: %llu)", what, (unsigned long long)compiles, nkeys,
                     (unsigned long long)timeouts);
        assert_int_equal(cs.locks, nkeys); /* one lock file per key, never unlinked */
    } else {
        assert_true(compiles >= (uint64_t)nkeys && compiles <= (uint64_t)(nkeys * nprocs));
        assert_int_equal(waits, 0);
        if (lock_fault) assert_true(lock_failures > 0);
    }
    assert_int_equal(writes, compiles); /* every compile published (a lost rename race still renames) */
    assert_int_equal(compiles + hits, (uint64_t)(nkeys * nprocs));
    fprintf(stderr,
            "[ figures  ] %s: processes=%d keys=%d builds=%d compiles=%llu disk_hits=%llu lock_waits=%llu "
            "lock_timeouts=%llu lock_failures=%llu entries=%d temps=%d bad=%d lost=%d wall=%.1fs\n",
            what, nprocs, nkeys, nprocs * nkeys, (unsigned long long)compiles, (unsigned long long)hits,
            (unsigned long long)waits, (unsigned long long)timeouts, (unsigned long long)lock_failures, cs.entries,
            cs.temps, cs.bad, lost, wall);
    mjt_shared_free(r, sizeof *r);
}

static void race_in(const char *kind, int use_tmpfs, int nkeys, int salt, int lock_timeout_ms, int lock_fault)
{
    char dir[4096], what[256];
    if (use_tmpfs) {
        if (mjt_tmpfs_dir(dir) != 0) {
            fprintf(stderr, "[  stress  ] no tmpfs at /dev/shm: %s skipped on tmpfs\n", kind);
            return;
        }
    } else {
        mjt_tmpdir(dir);
    }
    snprintf(what, sizeof what, "%s, %s", kind, use_tmpfs ? "tmpfs" : "regular dir");
    run_race(what, dir, MAX_PROCS, nkeys, salt, lock_timeout_ms, lock_fault);
    mjt_rmtree(dir);
}

/* Lock timeout long enough that nothing times out even on a loaded 2-core CI machine. */
enum { LONG_LOCK_MS = 120000 };

static void test_processes_one_cold_key(void **state)
{
    (void)state;
    race_in("16 processes, 1 cold key, lock", 0, 1, 0, LONG_LOCK_MS, 0);
    race_in("16 processes, 1 cold key, lock", 1, 1, 1, LONG_LOCK_MS, 0);
}

static void test_processes_fifty_keys(void **state)
{
    (void)state;
    race_in("16 processes, 50 keys, lock", 0, 50, 0, LONG_LOCK_MS, 0);
    race_in("16 processes, 50 keys, lock", 1, 50, 1, LONG_LOCK_MS, 0);
}

/* No lock (timeout 0 = disabled; or every lock attempt failing as on NFS without lockd):
 * duplicate compiles are allowed, nothing else changes. */
static void test_processes_without_lock(void **state)
{
    (void)state;
    race_in("16 processes, 1 cold key, no lock", 0, 1, 2, -1, 0);
    race_in("16 processes, 50 keys, no lock", 0, 50, 2, -1, 0);
    race_in("16 processes, 20 keys, lock fails (ENOLCK)", 1, 20, 3, LONG_LOCK_MS, 1);
}

/* A waiter gives up after the timeout and compiles itself: a stuck holder (here: this test,
 * holding the key's lock) costs at most the timeout. */
static void test_lock_timeout(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    moejit_kernel_desc d = small_kernel(7, 4);
    char key[1][33];
    expected_keys(&d, 1, key);
    mj_cache *c;
    assert_int_equal(mj_cache_open(dir, MOEJIT_CACHE_RW, &c), MOEJIT_OK);
    mj_cache_lock held;
    assert_int_equal(mj_cache_lock_key(c, key[0], 1000, &held), 1);
    assert_false(held.waited);

    moejit_config cfg = {.cache_dir = dir, .cache_lock_timeout_ms = 300};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    moejit_prewarm_result r;
    const double t0 = mjt_now();
    assert_int_equal(moejit_prewarm(ctx, &d, 1, ARCH, &r), MOEJIT_OK);
    const double waited = mjt_now() - t0;
    assert_int_equal(r.outcome, MOEJIT_PREWARM_COMPILED);
    moejit_stats s;
    moejit_ctx_stats(ctx, &s);
    assert_int_equal(s.lock_waits, 1);
    assert_int_equal(s.lock_timeouts, 1);
    assert_int_equal(s.compiles, 1);
    assert_true(waited >= 0.3 && waited < 30);
    moejit_close(ctx);
    mj_cache_unlock_key(&held);

    /* The lock is free again: taken at once. MOEJIT_CACHE_LOCK_TIMEOUT_MS is parsed. */
    assert_int_equal(mj_cache_lock_key(c, key[0], 1000, &held), 1);
    assert_false(held.waited);
    mj_cache_unlock_key(&held);
    mj_cache_close(c);
    setenv("MOEJIT_CACHE_LOCK_TIMEOUT_MS", "soon", 1);
    cfg.cache_lock_timeout_ms = 0;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(moejit_last_error(NULL), "MOEJIT_CACHE_LOCK_TIMEOUT_MS = \"soon\""));
    setenv("MOEJIT_CACHE_LOCK_TIMEOUT_MS", "0", 1);
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK); /* 0: no lock */
    d = small_kernel(8, 4);
    assert_int_equal(moejit_prewarm(ctx, &d, 1, ARCH, &r), MOEJIT_OK);
    moejit_ctx_stats(ctx, &s);
    assert_int_equal(s.lock_waits + s.lock_failures + s.lock_timeouts, 0);
    moejit_close(ctx);
    unsetenv("MOEJIT_CACHE_LOCK_TIMEOUT_MS");
    mjt_rmtree(dir);
}

/* ---- threads ------------------------------------------------------------------------------ */

enum { THREADS = 32, SHAPES = 20 };

typedef struct thread_race {
    moejit_ctx *ctx[2];
    int nctx;
    moejit_kernel_desc descs[SHAPES];
    char keys[SHAPES][33];
    atomic_int failures;
    char why[512];
    uint64_t cubin_hash[THREADS][SHAPES];
} thread_race;

static int race_thread(int index, void *user)
{
    thread_race *r = user;
    moejit_ctx *ctx = r->ctx[index % r->nctx];
    for (int j = 0; j < SHAPES; j++) {
        const int k = (j + index) % SHAPES; /* threads t and t+20 start on the same shape */
        mj_kernel_id id;
        mj_built b;
        moejit_status st = mj_kernel_id_from_desc(&r->descs[k], &id);
        if (st == MOEJIT_OK) st = mj_jit_build(ctx, &id, ARCH, 0, &b);
        if (st != MOEJIT_OK || strcmp(b.key_hex, r->keys[k]) || b.cubin_len < 4 || memcmp(b.cubin, "\x7f" "ELF", 4)) {
            if (atomic_fetch_add(&r->failures, 1) == 0)
                snprintf(r->why, sizeof r->why, "thread %d, shape %d: %s: %s", index, k, moejit_status_str(st),
                         st ? moejit_last_error(NULL) : "wrong key or cubin");
            if (st == MOEJIT_OK) mj_built_free(&b);
            continue;
        }
        r->cubin_hash[index][k] = XXH3_64bits(b.cubin, b.cubin_len);
        mj_built_free(&b);
    }
    return 0;
}

static void run_thread_race(int nctx, int salt)
{
    char dir[4096];
    mjt_tmpdir(dir);
    thread_race *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->nctx = nctx;
    for (int k = 0; k < SHAPES; k++) r->descs[k] = small_kernel(k, salt);
    expected_keys(r->descs, SHAPES, r->keys);
    for (int i = 0; i < nctx; i++) {
        moejit_config cfg = {.cache_dir = dir, .cache_lock_timeout_ms = LONG_LOCK_MS};
        assert_int_equal(moejit_open(&cfg, &r->ctx[i]), MOEJIT_OK);
    }
    const double t0 = mjt_now();
    mjt_run_threads(THREADS, race_thread, r, 300); /* a deadlock fails instead of hanging CI */
    const double wall = mjt_now() - t0;
    if (atomic_load(&r->failures)) fail_msg("%d failed builds; first: %s", atomic_load(&r->failures), r->why);

    uint64_t compiles = 0, hits = 0, waits = 0, lock_waits = 0;
    for (int i = 0; i < nctx; i++) {
        moejit_stats s;
        moejit_ctx_stats(r->ctx[i], &s);
        compiles += s.compiles, hits += s.disk_hits, waits += s.build_waits, lock_waits += s.lock_waits;
        assert_int_equal(s.lock_timeouts, 0);
        moejit_close(r->ctx[i]);
    }
    /* one compile per key, in all contexts together; every other build waited or hit the disk */
    assert_int_equal(compiles, SHAPES);
    assert_int_equal(compiles + hits + waits, THREADS * SHAPES);
    for (int k = 0; k < SHAPES; k++)
        for (int t = 1; t < THREADS; t++) assert_true(r->cubin_hash[t][k] == r->cubin_hash[0][k]);
    mjt_cache_census cs;
    mjt_cache_census_of(dir, &cs);
    assert_int_equal(cs.entries, SHAPES);
    assert_int_equal(cs.temps, 0);
    assert_int_equal(cs.bad, 0);
    fprintf(stderr,
            "[ figures  ] %d threads, %d shapes, %d context(s): builds=%d compiles=%llu build_waits=%llu disk_hits=%llu "
            "lock_waits=%llu entries=%d bad=%d wall=%.1fs\n",
            THREADS, SHAPES, nctx, THREADS * SHAPES, (unsigned long long)compiles, (unsigned long long)waits,
            (unsigned long long)hits, (unsigned long long)lock_waits, cs.entries, cs.bad, wall);
    free(r);
    mjt_rmtree(dir);
}

static void test_threads_one_context(void **state)
{
    (void)state;
    run_thread_race(1, 5);
}

/* Two contexts on one directory in one process: the per-key lock works between them too. */
static void test_threads_two_contexts(void **state)
{
    (void)state;
    run_thread_race(2, 6);
}

/* The failure of a build reaches every thread that waited for it, and is not cached: the next
 * call builds again. */
static void test_threads_share_failure(void **state)
{
    (void)state;
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF, .extra_nvrtc_flags = "--no-such-nvrtc-option"};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    moejit_kernel_desc d[8];
    for (int i = 0; i < 8; i++) d[i] = small_kernel(0, 7);
    moejit_prewarm_result r[8];
    assert_int_equal(moejit_prewarm(ctx, d, 8, ARCH, r), MOEJIT_ERR_COMPILE);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(r[i].status, MOEJIT_ERR_COMPILE);
        assert_non_null(strstr(r[i].error, "--no-such-nvrtc-option"));
    }
    moejit_close(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_processes_one_cold_key), cmocka_unit_test(test_processes_fifty_keys),
        cmocka_unit_test(test_processes_without_lock), cmocka_unit_test(test_lock_timeout),
        cmocka_unit_test(test_threads_one_context),    cmocka_unit_test(test_threads_two_contexts),
        cmocka_unit_test(test_threads_share_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
