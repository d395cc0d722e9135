/* Helpers of the reliability suites: forked children that start together and are waited for with
 * a deadline, memory shared with them, captured stderr, a tmpfs directory, mounts where the
 * machine allows them, and cache-directory inspection. */
#ifndef MOEJIT_TEST_STRESS_H
#define MOEJIT_TEST_STRESS_H

#include <stddef.h>
#include <stdint.h>

#include "support.h"

/* Zeroed memory shared with children forked later (MAP_SHARED | MAP_ANONYMOUS). */
void *mjt_shared_alloc(size_t bytes);
void mjt_shared_free(void *p, size_t bytes);

/* Fork n children that each run fn(index, user) as soon as all of them exist (a start barrier)
 * and _exit() with its return value. Waits at most timeout_s for all of them; on the deadline
 * kills the rest (SIGKILL) and says so. status[i] (may be NULL): the exit code, or -signal.
 * Returns how many children did not exit with 0 (timed out ones included). */
int mjt_fork_children(int n, int (*fn)(int index, void *user), void *user, double timeout_s, int *status,
                      int *timed_out);

/* Run fn(user) in one forked child with its stderr (and stdout) captured into out (NUL-terminated,
 * truncated to cap). Returns the exit code, or -signal. */
int mjt_fork_capture(int (*fn)(void *user), void *user, char *out, size_t cap);

/* Run fn(index, user) on n threads that start together (a barrier); wait at most timeout_s for
 * all of them — a deadlock ends the process with a message, since stuck threads cannot be
 * joined. Returns how many returned nonzero. */
int mjt_run_threads(int n, int (*fn)(int index, void *user), void *user, int timeout_s);

/* Occurrences of needle in text. */
int mjt_count_substr(const char *text, const char *needle);

/* A fresh directory on a tmpfs (under /dev/shm when that is a tmpfs), or -1 when there is none. */
int mjt_tmpfs_dir(char *path);

/* Files directly in dir whose name ends with suffix (0 if dir does not exist). */
int mjt_count_suffix(const char *dir, const char *suffix);

/* Set a file's mtime to `seconds_ago` before now. */
void mjt_age_file(const char *path, double seconds_ago);

/* 1 if this process may create mount namespaces and mount (root, or a permissive container):
 * then mjt_in_private_mount() works. Checked once, in a child. */
int mjt_can_mount(void);

/* In the calling (child) process: a private mount namespace, then `mount -t tmpfs -o <options>`
 * on dir. Returns 0, or -1 with errno. */
int mjt_private_tmpfs(const char *dir, const char *options);

/* The entries, temp files and verify result of a cache directory. */
typedef struct mjt_cache_census {
    int entries;    /* files under v1/ */
    int temps;      /* files in tmp/ */
    int locks;      /* files under locks/ */
    int bad;        /* entries failing a full verify */
} mjt_cache_census;
void mjt_cache_census_of(const char *dir, mjt_cache_census *out);

/* Seconds on a monotonic clock. */
double mjt_now(void);

#endif
