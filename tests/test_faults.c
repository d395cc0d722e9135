/* Crashes and disks (issue 8): processes killed (SIGKILL) in the middle of a publish — during the
 * write and between the write and the rename — leave only temp files, which later processes
 * ignore and sweep once they are old; read-only, permission-denied, full and quota-exceeded
 * disks, failing fsync and rename, a cache "directory" that is a file, no HOME: one warning, then
 * memory only, and every build still works; MOEJIT_CACHE=ro on a prewarmed read-only image.
 *
 * Failures are injected with the store's test-only fault hooks (src/cache/fault.h): this runs as
 * root in CI, where chmod stops nothing and mounts may be refused. Where the machine allows it
 * the same cases also run on real filesystems: a tiny tmpfs that fills up, a tmpfs remounted
 * read-only (private mount namespaces), and chmod when not root. Each case runs in a forked child
 * whose stderr is captured, so warnings can be counted. CPU only (NVRTC). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/fault.h"
#include "jit/build.h"
#include "jit/key.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"
#include "cache/store.h"
#include "stress.h"

#define ARCH "sm_90a"
#define WARNING "moejit warning:"

static moejit_kernel_desc kernel_n(int n)
{
    moejit_kernel_desc d;
    memset(&d, 0, sizeof d);
    d.op = MOEJIT_OP_ROUTE;
    d.route.num_experts = 300 + n;
    d.route.topk = 2;
    return d;
}

static void key_of(int n, char key[33])
{
    moejit_config cfg = {.cache_mode = MOEJIT_CACHE_OFF};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    moejit_kernel_desc d = kernel_n(n);
    mj_kernel_id id;
    mj_kernel_plan plan;
    mj_key k;
    assert_int_equal(mj_kernel_id_from_desc(&d, &id), MOEJIT_OK);
    assert_int_equal(mj_jit_key(ctx, &id, ARCH, &plan, &k), MOEJIT_OK);
    memcpy(key, k.hex, 33);
    mj_key_free(&k);
    moejit_close(ctx);
}

static void prewarm_range(const char *dir, int first, int count)
{
    moejit_config cfg = {.cache_dir = dir, .log_level = MOEJIT_LOG_SILENT};
    moejit_ctx *ctx;
    assert_int_equal(moejit_open(&cfg, &ctx), MOEJIT_OK);
    for (int i = first; i < first + count; i++) {
        moejit_kernel_desc d = kernel_n(i);
        moejit_prewarm_result r;
        assert_int_equal(moejit_prewarm(ctx, &d, 1, ARCH, &r), MOEJIT_OK);
    }
    moejit_close(ctx);
}

static void entry_file(const char *dir, const char *key, char *path, size_t cap)
{
    snprintf(path, cap, "%s/v1/%.2s/%s.mjc", dir, key, key + 2);
}

/* ---- the child side: build kernels, report ---------------------------------------------------- */

typedef struct fault_spec {
    mj_fault_point point;
    int err;
    unsigned from_call;
} fault_spec;

typedef struct build_job {
    char dir[4096];             /* cache directory ("" = from the environment) */
    moejit_cache_mode mode;
    int no_compile;
    int first, count;           /* kernels kernel_n(first .. first+count-1) */
    fault_spec faults[4];       /* err 0 ends the list */
    mj_fault_crash_at crash;
    int rounds;                 /* build everything this many times */
    /* real filesystems (in the child's private mount namespace) */
    const char *tmpfs_options;  /* mount a tmpfs on dir first */
    int prewarm_then_remount_ro; /* prewarm `prewarm_count` kernels there, then remount it read-only */
    int prewarm_count;
    int unset_home;             /* no HOME, XDG_CACHE_HOME or MOEJIT_CACHE_DIR */
    uid_t become_uid;           /* setuid() first when nonzero */
    const char *home;           /* HOME=home when not NULL */
    const char *xdg;            /* XDG_CACHE_HOME=xdg when not NULL */
    /* results */
    int ok;
    char why[1024];
    int builds, failed, from_disk;
    moejit_status first_error;
    char first_error_text[1024];
    moejit_stats stats;
    unsigned long faults_injected;
    char cache_dir[4096];
    mjt_cache_census census;    /* of dir, taken in the child (its mounts are private) */
} build_job;

static int build_child(void *user)
{
    build_job *j = user;
    if (j->become_uid && setuid(j->become_uid) != 0) {
        snprintf(j->why, sizeof j->why, "setuid(%d): %s", (int)j->become_uid, strerror(errno));
        return 2;
    }
    if (j->unset_home) {
        unsetenv("HOME");
        unsetenv("XDG_CACHE_HOME");
        unsetenv("MOEJIT_CACHE_DIR");
    }
    if (j->home) {
        setenv("HOME", j->home, 1);
        unsetenv("MOEJIT_CACHE_DIR");
        unsetenv("XDG_CACHE_HOME");
    }
    if (j->xdg) setenv("XDG_CACHE_HOME", j->xdg, 1);
    if (j->tmpfs_options && mjt_private_tmpfs(j->dir, j->tmpfs_options) != 0) {
        snprintf(j->why, sizeof j->why, "mount tmpfs on %.900s: %s", j->dir, strerror(errno));
        return 2;
    }
    if (j->prewarm_then_remount_ro) {
        prewarm_range(j->dir, j->first, j->prewarm_count);
        if (mount("tmpfs", j->dir, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL) != 0) {
            snprintf(j->why, sizeof j->why, "remount %.900s read-only: %s", j->dir, strerror(errno));
            return 2;
        }
    }
    for (int i = 0; i < 4 && j->faults[i].err; i++) mj_fault_fail(j->faults[i].point, j->faults[i].err, j->faults[i].from_call);
    if (j->crash) mj_fault_crash(j->crash);

    moejit_config cfg = {.cache_dir = j->dir[0] ? j->dir : NULL, .cache_mode = j->mode, .no_compile = j->no_compile,
                         .log_level = MOEJIT_LOG_WARN, .cache_lock_timeout_ms = 60000};
    moejit_ctx *ctx;
    moejit_status st = moejit_open(&cfg, &ctx);
    if (st != MOEJIT_OK) {
        snprintf(j->why, sizeof j->why, "moejit_open: %s", moejit_last_error(NULL));
        return 2;
    }
    snprintf(j->cache_dir, sizeof j->cache_dir, "%s", moejit_ctx_cache_dir(ctx));
    for (int round = 0; round < (j->rounds ? j->rounds : 1); round++)
        for (int i = j->first; i < j->first + j->count; i++) {
            moejit_kernel_desc d = kernel_n(i);
            mj_kernel_id id;
            mj_built b;
            j->builds++;
            if ((st = mj_kernel_id_from_desc(&d, &id)) == MOEJIT_OK) st = mj_jit_build(ctx, &id, ARCH, 0, &b);
            if (st == MOEJIT_OK && (b.cubin_len < 4 || memcmp(b.cubin, "\x7f" "ELF", 4))) st = MOEJIT_ERR_CORRUPT;
            if (st != MOEJIT_OK) {
                if (!j->failed++) {
                    j->first_error = st;
                    snprintf(j->first_error_text, sizeof j->first_error_text, "%s", moejit_last_error(NULL));
                }
                continue;
            }
            j->from_disk += b.from_disk;
            mj_built_free(&b);
        }
    moejit_ctx_stats(ctx, &j->stats);
    moejit_close(ctx);
    j->faults_injected = mj_fault_injected();
    mj_fault_clear(); /* the census reads the directory as it is */
    if (j->dir[0]) mjt_cache_census_of(j->dir, &j->census);
    j->ok = 1;
    return 0;
}

static char g_out[1 << 16];

/* Run a job in a child; returns its exit status (or -signal). The job's memory is shared. */
static int run_job(build_job *j)
{
    return mjt_fork_capture(build_child, j, g_out, sizeof g_out);
}

static build_job *new_job(const char *dir, int first, int count)
{
    build_job *j = mjt_shared_alloc(sizeof *j);
    if (dir) snprintf(j->dir, sizeof j->dir, "%.4000s", dir);
    j->first = first, j->count = count;
    return j;
}

static void free_job(build_job *j) { mjt_shared_free(j, sizeof *j); }

static void expect_all_built(const char *what, const build_job *j)
{
    if (!j->ok) fail_msg("%s: the child did not finish: %s\n%s", what, j->why, g_out);
    if (j->failed)
        fail_msg("%s: %d of %d builds failed; first: %s: %s", what, j->failed, j->builds,
                 moejit_status_str(j->first_error), j->first_error_text);
}

static void expect_warnings(const char *what, int n)
{
    const int got = mjt_count_substr(g_out, WARNING);
    if (got != n) fail_msg("%s: %d warnings, expected %d:\n%s", what, got, n, g_out);
}

/* ---- crashes -------------------------------------------------------------------------------- */

/* Processes killed while publishing, again and again, beside a cache of good entries: the
 * leftovers are temp files only; the next process compiles the kernel (not waiting for the dead
 * one's lock) and publishes it; no good entry is lost; the temp files go once they are older
 * than the grace period, fresh ones stay. */
static void test_crash_mid_publish(void **state)
{
    (void)state;
    enum { OLD = 5, CRASHES = 12 };
    char dir[4096], tmpdir[4200];
    mjt_tmpdir(dir);
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
    prewarm_range(dir, 0, OLD);
    int survivors_waited = 0;
    for (int i = 0; i < CRASHES; i++) {
        const int n = 100 + i;
        const mj_fault_crash_at at = i % 2 ? MJ_CRASH_MID_WRITE : MJ_CRASH_BEFORE_RENAME;
        build_job *j = new_job(dir, n, 1);
        j->crash = at;
        const int rc = run_job(j);
        if (rc != -SIGKILL) fail_msg("crash %d: the child ended with %d, not SIGKILL:\n%s", i, rc, g_out);
        free_job(j);
        char key[33], path[4300];
        key_of(n, key);
        entry_file(dir, key, path, sizeof path);
        assert_int_equal(access(path, F_OK), -1); /* never renamed into place */
        assert_int_equal(mjt_count_suffix(tmpdir, ".tmp"), i + 1);

        /* The leftover: complete but unpublished, or cut in half. Nobody reads it. */
        mjt_cache_census cs;
        mjt_cache_census_of(dir, &cs);
        assert_int_equal(cs.entries, OLD + i);
        assert_int_equal(cs.bad, 0);

        /* the next process: compiles, publishes; the dead holder's lock was released */
        j = new_job(dir, n, 1);
        const double t0 = mjt_now();
        assert_int_equal(run_job(j), 0);
        expect_all_built("after a crash", j);
        assert_int_equal(j->stats.compiles, 1);
        assert_int_equal(j->stats.disk_writes, 1);
        assert_int_equal(j->stats.lock_timeouts, 0);
        assert_true(mjt_now() - t0 < 30); /* the lock timeout is 60 s */
        assert_int_equal(j->stats.temps_swept, 0); /* the leftovers are fresh: they stay */
        survivors_waited += (int)j->stats.lock_waits;
        free_job(j);
        assert_int_equal(access(path, F_OK), 0);
    }
    mjt_cache_census cs;
    mjt_cache_census_of(dir, &cs);
    assert_int_equal(cs.entries, OLD + CRASHES);
    assert_int_equal(cs.bad, 0);
    assert_int_equal(cs.temps, CRASHES);

    /* Age the leftovers past the grace period, then crash once more (a fresh leftover), then a
     * publish: the old ones are swept, the fresh one stays. */
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) {
            char p[4600];
            snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
            mjt_age_file(p, MJ_CACHE_TEMP_GRACE_SECONDS + 60);
        }
    closedir(d);
    build_job *j = new_job(dir, 200, 1);
    j->crash = MJ_CRASH_BEFORE_RENAME;
    assert_int_equal(run_job(j), -SIGKILL);
    free_job(j);
    j = new_job(dir, 201, 1);
    assert_int_equal(run_job(j), 0);
    expect_all_built("sweep", j);
    assert_int_equal(j->stats.temps_swept, CRASHES);
    free_job(j);
    assert_int_equal(mjt_count_suffix(tmpdir, ".tmp"), 1);
    mjt_cache_census_of(dir, &cs);
    assert_int_equal(cs.entries, OLD + CRASHES + 1);
    assert_int_equal(cs.bad, 0);
    fprintf(stderr,
            "[ figures  ] crashes: processes=%d killed=%d (mid-write %d, before rename %d) entries=%d bad=0 lost=0 "
            "stale temps swept=%d fresh kept=1 survivor lock waits=%d lock timeouts=0\n",
            2 * CRASHES + 3, CRASHES + 1, CRASHES / 2, CRASHES / 2 + 1, cs.entries, CRASHES, survivors_waited);
    mjt_rmtree(dir);
}

/* A process killed while holding a key's lock (between its write and its rename) while another
 * waits for that lock: the waiter gets the lock when the holder dies — long before its timeout —
 * looks again, compiles and publishes. */
static int lock_is_held(const char *dir, const char *key)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/locks/%.2s/%s.lock", dir, key, key + 2);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    const int held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd); /* releases it if we got it */
    return held;
}

typedef struct holder_race {
    build_job *holder, *waiter;
    char dir[4096], key[33];
} holder_race;

static int holder_or_waiter(int index, void *user)
{
    holder_race *h = user;
    if (index == 0) {
        build_child(h->holder);
        return 0; /* not reached: killed */
    }
    /* the waiter starts once the holder has the lock */
    const double deadline = mjt_now() + 60;
    while (!lock_is_held(h->dir, h->key) && mjt_now() < deadline) usleep(200);
    return build_child(h->waiter);
}

static void test_crash_holding_lock(void **state)
{
    (void)state;
    holder_race *h = mjt_shared_alloc(sizeof *h);
    mjt_tmpdir(h->dir);
    key_of(300, h->key);
    h->holder = new_job(h->dir, 300, 1);
    h->holder->crash = MJ_CRASH_BEFORE_RENAME;
    h->waiter = new_job(h->dir, 300, 1);
    int status[2], late;
    const double t0 = mjt_now();
    mjt_fork_children(2, holder_or_waiter, h, 120, status, &late);
    assert_int_equal(late, 0);
    assert_int_equal(status[0], -SIGKILL);
    assert_int_equal(status[1], 0);
    expect_all_built("waiter", h->waiter);
    assert_int_equal(h->waiter->stats.compiles, 1);
    assert_int_equal(h->waiter->stats.lock_timeouts, 0);
    assert_true(mjt_now() - t0 < 30);
    mjt_cache_census cs;
    mjt_cache_census_of(h->dir, &cs);
    assert_int_equal(cs.entries, 1);
    assert_int_equal(cs.bad, 0);
    assert_int_equal(cs.temps, 1); /* the holder's, fresh */
    fprintf(stderr, "[ figures  ] holder killed with the lock: waiter lock_waits=%llu compiles=1 wall=%.2fs\n",
            (unsigned long long)h->waiter->stats.lock_waits, mjt_now() - t0);
    free_job(h->holder);
    free_job(h->waiter);
    mjt_rmtree(h->dir);
    mjt_shared_free(h, sizeof *h);
}

/* ---- disks ---------------------------------------------------------------------------------- */

typedef struct disk_case {
    const char *what;
    fault_spec faults[4];
    int published_before_failure; /* publishes that succeed before the fault hits */
} disk_case;

/* Prewarm 3 kernels, then a child with the faults armed builds 6 (3 on disk, 3 new) twice:
 * every build works, one warning, the store stays consistent. */
static void test_disk_faults(void **state)
{
    (void)state;
    const disk_case cases[] = {
        {"read-only filesystem (EROFS)", {{MJ_FAULT_OPEN_TMP, EROFS, 1}, {MJ_FAULT_LOCK, EROFS, 1}}, 0},
        {"permission denied (EACCES)",
         {{MJ_FAULT_OPEN_TMP, EACCES, 1}, {MJ_FAULT_LOCK, EACCES, 1}, {MJ_FAULT_MKDIR, EACCES, 1}}, 0},
        {"full disk on the 2nd write (ENOSPC)", {{MJ_FAULT_WRITE, ENOSPC, 2}}, 1},
        {"quota exceeded creating the temp file (EDQUOT)", {{MJ_FAULT_OPEN_TMP, EDQUOT, 1}}, 0},
        {"fsync fails (EIO)", {{MJ_FAULT_FSYNC, EIO, 1}}, 0},
        {"fsync: full disk on the 3rd (ENOSPC)", {{MJ_FAULT_FSYNC, ENOSPC, 3}}, 2},
        {"rename fails (EACCES)", {{MJ_FAULT_RENAME, EACCES, 1}}, 0},
        {"entries unreadable (EIO on open) and writes refused", {{MJ_FAULT_READ, EIO, 1}, {MJ_FAULT_OPEN_TMP, EROFS, 1}}, 0},
    };
    unsigned long faults = 0;
    int builds = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const disk_case *dc = &cases[c];
        char dir[4096];
        mjt_tmpdir(dir);
        prewarm_range(dir, 0, 3);
        build_job *j = new_job(dir, 0, 6);
        j->rounds = 2;
        memcpy(j->faults, dc->faults, sizeof j->faults);
        assert_int_equal(run_job(j), 0);
        expect_all_built(dc->what, j);
        expect_warnings(dc->what, 1);
        const int unreadable = dc->faults[0].point == MJ_FAULT_READ;
        if (!unreadable && j->from_disk < 6) /* the 3 prewarmed, in both rounds */
            fail_msg("%s: %d builds from disk", dc->what, j->from_disk);
        assert_int_equal(j->stats.disk_writes, dc->published_before_failure);
        assert_int_equal(j->stats.disk_write_errors, 1); /* then memory only: no more attempts */
        assert_int_equal(j->census.entries, 3 + dc->published_before_failure);
        assert_int_equal(j->census.temps, 0);
        assert_int_equal(j->census.bad, 0);
        if (!strstr(g_out, "continuing with the in-memory cache only")) fail_msg("%s: warning text:\n%s", dc->what, g_out);
        faults += j->faults_injected;
        builds += j->builds;
        free_job(j);
        mjt_rmtree(dir);
    }
    fprintf(stderr, "[ figures  ] disk faults: cases=%zu processes=%zu builds=%d failed=0 faults injected=%lu "
            "warnings=1 per process entries lost=0 temps left=0\n",
            sizeof cases / sizeof cases[0], sizeof cases / sizeof cases[0], builds, faults);
}

/* The same on real filesystems, where the machine lets a child mount: a 256 KiB tmpfs fills up
 * after two or three entries; a tmpfs remounted read-only under a prewarmed cache. */
static void test_real_full_and_readonly(void **state)
{
    (void)state;
    if (!mjt_can_mount()) skip();
    char dir[4096];
    mjt_tmpdir(dir);
    build_job *j = new_job(dir, 10, 8);
    j->tmpfs_options = "size=256k";
    j->rounds = 2;
    assert_int_equal(run_job(j), 0);
    expect_all_built("full tmpfs", j);
    expect_warnings("full tmpfs", 1);
    assert_true(strstr(g_out, strerror(ENOSPC)) != NULL);
    assert_true(j->census.entries >= 1 && j->census.entries < 8);
    assert_int_equal(j->census.temps, 0);
    assert_int_equal(j->census.bad, 0);
    assert_int_equal(j->stats.disk_write_errors, 1);
    fprintf(stderr, "[ figures  ] real full tmpfs (256 KiB): builds=%d entries=%d then ENOSPC, warnings=1, bad=0, temps=0\n",
            j->builds, j->census.entries);
    free_job(j);

    j = new_job(dir, 20, 6);
    j->tmpfs_options = "size=4m";
    j->prewarm_then_remount_ro = 1, j->prewarm_count = 3;
    assert_int_equal(run_job(j), 0);
    expect_all_built("read-only tmpfs", j);
    expect_warnings("read-only tmpfs", 1);
    assert_true(strstr(g_out, strerror(EROFS)) != NULL);
    assert_int_equal(j->from_disk, 3);
    assert_int_equal(j->census.entries, 3);
    assert_int_equal(j->census.bad, 0);
    free_job(j);

    /* MOEJIT_CACHE=ro on the read-only image: no warning at all */
    j = new_job(dir, 20, 3);
    j->tmpfs_options = "size=4m";
    j->prewarm_then_remount_ro = 1, j->prewarm_count = 3;
    j->mode = MOEJIT_CACHE_RO, j->no_compile = 1;
    assert_int_equal(run_job(j), 0);
    expect_all_built("MOEJIT_CACHE=ro, read-only tmpfs", j);
    expect_warnings("MOEJIT_CACHE=ro, read-only tmpfs", 0);
    assert_int_equal(j->from_disk, 3);
    free_job(j);
    mjt_rmtree(dir);
}

/* Real permission denied, where chmod works (not root). */
static void test_real_permission_denied(void **state)
{
    (void)state;
    if (geteuid() == 0) skip(); /* root ignores modes; test_disk_faults injects EACCES instead */
    char dir[4096];
    mjt_tmpdir(dir);
    prewarm_range(dir, 30, 2);
    assert_int_equal(chmod(dir, 0555), 0);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/tmp", dir);
    chmod(sub, 0555);
    build_job *j = new_job(dir, 30, 4);
    assert_int_equal(run_job(j), 0);
    expect_all_built("chmod 0555", j);
    expect_warnings("chmod 0555", 1);
    assert_int_equal(j->from_disk, 2);
    free_job(j);
    mjt_rmtree(dir);
}

/* A cache directory that is a file; HOME pointing at a file; no HOME, XDG_CACHE_HOME or passwd
 * entry; a relative XDG_CACHE_HOME (ignored, as the XDG spec says). */
static void test_no_usable_directory(void **state)
{
    (void)state;
    char dir[4096], file[4200];
    mjt_tmpdir(dir);
    snprintf(file, sizeof file, "%s/a-file", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);

    build_job *j = new_job(file, 40, 3);
    j->rounds = 2;
    assert_int_equal(run_job(j), 0);
    expect_all_built("cache dir is a file", j);
    expect_warnings("cache dir is a file", 1);
    assert_int_equal(j->stats.compiles, 6);
    free_job(j);

    j = new_job(NULL, 40, 2);
    j->home = "/dev/null"; /* ~/.cache/moejit cannot exist under a character device */
    assert_int_equal(run_job(j), 0);
    expect_all_built("HOME=/dev/null", j);
    expect_warnings("HOME=/dev/null", 1);
    assert_string_equal(j->cache_dir, "/dev/null/.cache/moejit");
    free_job(j);

    j = new_job(NULL, 40, 1);
    j->home = dir;
    j->xdg = "relative/cache";
    assert_int_equal(run_job(j), 0);
    expect_all_built("relative XDG_CACHE_HOME", j);
    char want[4300];
    snprintf(want, sizeof want, "%s/.cache/moejit", dir);
    assert_string_equal(j->cache_dir, want);
    free_job(j);

    if (geteuid() == 0) { /* a uid without a passwd entry: no home directory at all */
        j = new_job(NULL, 40, 2);
        j->unset_home = 1;
        j->become_uid = 54321;
        assert_int_equal(run_job(j), 0);
        expect_all_built("no HOME, no XDG_CACHE_HOME, no passwd entry", j);
        expect_warnings("no HOME, no XDG_CACHE_HOME, no passwd entry", 1);
        assert_string_equal(j->cache_dir, "");
        assert_non_null(strstr(g_out, "kernels are kept in memory only"));
        free_job(j);
    }
    mjt_rmtree(dir);
}

/* MOEJIT_CACHE=ro on a prewarmed image that is read-only (faults on every write): everything
 * loads, nothing is written or stamped, no lock file is created, no warning; a kernel that was
 * not prewarmed is MOEJIT_ERR_CACHE_MISS in strict mode, compiled in memory otherwise. */
static void test_readonly_image(void **state)
{
    (void)state;
    char dir[4096];
    mjt_tmpdir(dir);
    prewarm_range(dir, 50, 4);
    mjt_cache_census before;
    mjt_cache_census_of(dir, &before);
    char key[33], path[4300];
    key_of(50, key);
    entry_file(dir, key, path, sizeof path);
    mjt_age_file(path, 7200);
    struct stat st0;
    assert_int_equal(stat(path, &st0), 0);

    const fault_spec ro[4] = {{MJ_FAULT_MKDIR, EROFS, 1}, {MJ_FAULT_OPEN_TMP, EROFS, 1}, {MJ_FAULT_LOCK, EROFS, 1},
                              {MJ_FAULT_RENAME, EROFS, 1}};
    build_job *j = new_job(dir, 50, 4);
    j->mode = MOEJIT_CACHE_RO, j->no_compile = 1, j->rounds = 3;
    memcpy(j->faults, ro, sizeof ro);
    assert_int_equal(run_job(j), 0);
    expect_all_built("MOEJIT_CACHE=ro strict", j);
    expect_warnings("MOEJIT_CACHE=ro strict", 0);
    assert_int_equal(j->from_disk, 12);
    assert_int_equal(j->stats.compiles, 0);
    assert_int_equal(j->faults_injected, 0); /* ro never tried to write */
    free_job(j);

    j = new_job(dir, 54, 1); /* not prewarmed */
    j->mode = MOEJIT_CACHE_RO, j->no_compile = 1;
    memcpy(j->faults, ro, sizeof ro);
    assert_int_equal(run_job(j), 0);
    assert_int_equal(j->failed, 1);
    assert_int_equal(j->first_error, MOEJIT_ERR_CACHE_MISS);
    key_of(54, key);
    assert_non_null(strstr(j->first_error_text, key));
    free_job(j);

    j = new_job(dir, 54, 1);
    j->mode = MOEJIT_CACHE_RO;
    memcpy(j->faults, ro, sizeof ro);
    assert_int_equal(run_job(j), 0);
    expect_all_built("MOEJIT_CACHE=ro, a miss", j);
    expect_warnings("MOEJIT_CACHE=ro, a miss", 0);
    assert_int_equal(j->stats.compiles, 1);
    assert_int_equal(j->faults_injected, 0);
    free_job(j);

    mjt_cache_census after;
    mjt_cache_census_of(dir, &after);
    assert_int_equal(after.entries, before.entries);
    assert_int_equal(after.locks, before.locks);
    assert_int_equal(after.temps, 0);
    struct stat st1;
    assert_int_equal(stat(path, &st1), 0);
    assert_true(st1.st_mtim.tv_sec == st0.st_mtim.tv_sec); /* ro does not stamp */
    mjt_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_mid_publish),      cmocka_unit_test(test_crash_holding_lock),
        cmocka_unit_test(test_disk_faults),            cmocka_unit_test(test_real_full_and_readonly),
        cmocka_unit_test(test_real_permission_denied), cmocka_unit_test(test_no_usable_directory),
        cmocka_unit_test(test_readonly_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
