#include "stress.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "cache/maintenance.h"
#include "cache/store.h"

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

double mjt_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void *mjt_shared_alloc(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    return p;
}

void mjt_shared_free(void *p, size_t bytes) { munmap(p, bytes); }

static int status_of(int wstatus)
{
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) return -WTERMSIG(wstatus);
    return -1000;
}

int mjt_fork_children(int n, int (*fn)(int index, void *user), void *user, double timeout_s, int *status,
                      int *timed_out)
{
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    assert_non_null(pids);
    fflush(NULL);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(gate[1]);
            char c;
            while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
            }
            close(gate[0]);
            _exit(fn(i, user));
        }
    }
    close(gate[0]);
    close(gate[1]); /* every child's read returns 0 now: they start together */
    int failures = 0, left = n, late = 0;
    const double deadline = mjt_now() + timeout_s;
    while (left > 0) {
        int ws;
        pid_t p = waitpid(-1, &ws, WNOHANG);
        if (p > 0) {
            for (int i = 0; i < n; i++)
                if (pids[i] == p) {
                    if (status) status[i] = status_of(ws);
                    if (status_of(ws) != 0) failures++;
                    pids[i] = 0;
                    left--;
                }
            continue;
        }
        if (mjt_now() > deadline) {
            for (int i = 0; i < n; i++)
                if (pids[i] > 0) {
                    kill(pids[i], SIGKILL);
                    waitpid(pids[i], &ws, 0);
                    if (status) status[i] = -SIGKILL;
                    failures++;
                    late++;
                    left--;
                }
            fprintf(stderr, "[  stress  ] %d of %d children still running after %.0f s: killed\n", late, n, timeout_s);
            break;
        }
        usleep(2000);
    }
    free(pids);
    if (timed_out) *timed_out = late;
    return failures;
}

int mjt_fork_capture(int (*fn)(void *user), void *user, char *out, size_t cap)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[1]);
        const int rc = fn(user);
        fflush(NULL);
        _exit(rc);
    }
    close(fds[1]);
    return status_of(mjt_collect(fds[0], pid, out, cap));
}

typedef struct thread_pool {
    int (*fn)(int index, void *user);
    void *user;
    pthread_barrier_t start;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int finished, failures;
} thread_pool;

typedef struct thread_slot {
    thread_pool *pool;
    int index;
} thread_slot;

static void *pool_thread(void *p)
{
    thread_slot *s = p;
    thread_pool *pool = s->pool;
    pthread_barrier_wait(&pool->start);
    const int rc = pool->fn(s->index, pool->user);
    pthread_mutex_lock(&pool->mu);
    pool->finished++;
    pool->failures += rc != 0;
    pthread_cond_signal(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

int mjt_run_threads(int n, int (*fn)(int index, void *user), void *user, int timeout_s)
{
    thread_pool pool = {.fn = fn, .user = user};
    pthread_barrier_init(&pool.start, NULL, (unsigned)n);
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.cv, NULL);
    pthread_t *tid = calloc((size_t)n, sizeof *tid);
    thread_slot *slots = calloc((size_t)n, sizeof *slots);
    assert_true(tid && slots);
    for (int i = 0; i < n; i++) {
        slots[i] = (thread_slot){&pool, i};
        assert_int_equal(pthread_create(&tid[i], NULL, pool_thread, &slots[i]), 0);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_s;
    pthread_mutex_lock(&pool.mu);
    while (pool.finished < n)
        if (pthread_cond_timedwait(&pool.cv, &pool.mu, &deadline) == ETIMEDOUT) break;
    const int finished = pool.finished;
    pthread_mutex_unlock(&pool.mu);
    if (finished < n) {
        fprintf(stderr, "%d of %d threads still running after %d s: deadlock\n", n - finished, n, timeout_s);
        _exit(1); /* the stuck threads cannot be joined, nor the test go on */
    }
    for (int i = 0; i < n; i++) pthread_join(tid[i], NULL);
    free(tid);
    free(slots);
    pthread_barrier_destroy(&pool.start);
    pthread_mutex_destroy(&pool.mu);
    pthread_cond_destroy(&pool.cv);
    return pool.failures;
}

int mjt_count_substr(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

int mjt_tmpfs_dir(char *path)
{
    struct statfs fs;
    if (statfs("/dev/shm", &fs) != 0 || fs.f_type != TMPFS_MAGIC || access("/dev/shm", W_OK) != 0) return -1;
    snprintf(path, 4096, "/dev/shm/moejit-test-XXXXXX");
    return mkdtemp(path) ? 0 : -1;
}

int mjt_count_suffix(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    const size_t sl = strlen(suffix);
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t l = strlen(e->d_name);
        if (l >= sl && !strcmp(e->d_name + l - sl, suffix)) n++;
    }
    closedir(d);
    return n;
}

void mjt_age_file(const char *path, double seconds_ago)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct timespec ts[2] = {{now.tv_sec - (time_t)seconds_ago, 0}, {now.tv_sec - (time_t)seconds_ago, 0}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

int mjt_private_tmpfs(const char *dir, const char *options)
{
    if (unshare(CLONE_NEWNS) != 0) return -1;
    if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
    return mount("tmpfs", dir, "tmpfs", 0, options);
}

static int try_mount(void *user)
{
    return mjt_private_tmpfs((const char *)user, "size=64k") == 0 ? 0 : 1;
}

int mjt_can_mount(void)
{
    static int known = -1;
    if (known >= 0) return known;
    char dir[4096], out[256];
    mjt_tmpdir(dir);
    known = mjt_fork_capture(try_mount, dir, out, sizeof out) == 0;
    rmdir(dir);
    if (!known) fprintf(stderr, "[  stress  ] mounting is not allowed here: the real-filesystem variants skip\n");
    return known;
}

void mjt_cache_census_of(const char *dir, mjt_cache_census *out)
{
    memset(out, 0, sizeof *out);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/v1", dir);
    out->entries = mjt_count_files(sub);
    snprintf(sub, sizeof sub, "%s/tmp", dir);
    out->temps = mjt_count_files(sub);
    snprintf(sub, sizeof sub, "%s/locks", dir);
    out->locks = mjt_count_files(sub);
    mj_cache *c;
    if (mj_cache_open(dir, MOEJIT_CACHE_RO, &c) != MOEJIT_OK) {
        out->bad = -1;
        return;
    }
    mj_cache_verify_stats vs;
    if (mj_cache_verify(c, 0, NULL, NULL, &vs) == MOEJIT_OK) out->bad = (int)vs.bad;
    else out->bad = -1;
    mj_cache_close(c);
}
