#include "cache/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/file.h>
#include <sys/random.h>

#include "common/error.h"
#include "common/log.h"
#include "cache/fault.h"

struct mj_cache {
    char root[4096];
    moejit_cache_mode mode;
    atomic_int write_failed; /* set once a write failed: warn once, then stay memory-only */
    char write_error[9000];   /* what that failure was, for reports (set once, by its writer) */
    atomic_int write_error_set;
    atomic_llong last_sweep;  /* CLOCK_REALTIME seconds of the last temp sweep on the publish path */
    atomic_ullong write_errors, temps_swept;
};

static atomic_uint g_temp_counter;

moejit_status mj_cache_open(const char *root, moejit_cache_mode mode, mj_cache **out)
{
    *out = NULL;
    mj_cache *c = calloc(1, sizeof *c);
    if (!c) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory opening the cache");
    if (mode != MOEJIT_CACHE_OFF) {
        if (!root || root[0] != '/' || strlen(root) >= sizeof c->root - 64) {
            free(c);
            return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "cache directory \"%s\" must be an absolute path shorter than %zu bytes",
                           root ? root : "(null)", sizeof c->root - 64);
        }
        snprintf(c->root, sizeof c->root, "%s", root);
        /* Trailing slashes would double up in every path. */
        for (size_t n = strlen(c->root); n > 1 && c->root[n - 1] == '/'; n--) c->root[n - 1] = '\0';
    }
    c->mode = mode;
    *out = c;
    return MOEJIT_OK;
}

void mj_cache_close(mj_cache *c) { free(c); }

const char *mj_cache_root(const mj_cache *c) { return c->mode == MOEJIT_CACHE_OFF ? "" : c->root; }
int mj_cache_readable(const mj_cache *c) { return c->mode == MOEJIT_CACHE_RW || c->mode == MOEJIT_CACHE_RO; }
int mj_cache_writable(const mj_cache *c) { return c->mode == MOEJIT_CACHE_RW && !atomic_load(&c->write_failed); }

int mj_cache_entry_path(const mj_cache *c, const char *key_hex, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/v1/%.2s/%s.mjc", c->root, key_hex, key_hex + 2);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

void mj_cache_blob_free(mj_cache_blob *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Read a whole file. MOEJIT_ERR_NOT_FOUND if it does not exist. */
static moejit_status read_whole(const char *path, mj_cache_blob *out, int *fd_out)
{
    memset(out, 0, sizeof *out);
    /* O_NONBLOCK: a FIFO planted under an entry's name must not block the open (regular files
     * ignore the flag); fstat then rejects anything that is not a regular file. */
    int fd = MJ_FAULT(MJ_FAULT_READ) ? -1 : open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) return mj_fail(MOEJIT_ERR_NOT_FOUND, "no cache entry %s", path);
        return mj_fail(MOEJIT_ERR_IO, "cannot open cache entry %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return mj_fail(MOEJIT_ERR_IO, "cannot stat cache entry %s: %s", path, strerror(errno));
    }
    out->dev = st.st_dev; /* known from here on, so that a bad entry can be removed */
    out->ino = st.st_ino;
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mj_fail(MOEJIT_ERR_CORRUPT, "cache entry %s is not a regular file", path);
    }
    if (st.st_size > (off_t)MJ_ENTRY_MAX_BYTES) {
        close(fd);
        return mj_fail(MOEJIT_ERR_CORRUPT, "cache entry %s is %lld bytes, over the %u-byte limit", path,
                       (long long)st.st_size, MJ_ENTRY_MAX_BYTES);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *data = malloc(len ? len : 1);
    if (!data) {
        close(fd);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, data + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (fd_out) *fd_out = fd;
    else close(fd);
    out->data = data;
    out->len = got; /* a file that shrank under us simply fails verification */
    return MOEJIT_OK;
}

moejit_status mj_cache_read_file(const char *path, mj_cache_blob *out)
{
    moejit_status st = read_whole(path, out, NULL);
    if (st != MOEJIT_OK) return st;
    st = mj_entry_decode(out->data, out->len, &out->view);
    if (st != MOEJIT_OK) {
        mj_error_append(" (%s)", path);
        mj_cache_blob_free(out);
    }
    return st;
}

/* A bad entry is a miss; the recompile replaces it. Only the file that was read goes: another
 * process may have renamed a good entry over it since. A directory planted under an entry's
 * name goes too when it is empty (else the publish that replaces it fails and warns). */
static void remove_bad(mj_cache *c, const char *path, const mj_cache_blob *read)
{
    struct stat now;
    if (!mj_cache_writable(c) || lstat(path, &now) != 0) return;
    if (S_ISLNK(now.st_mode)) {
        unlink(path); /* a link where an entry belongs is never ours */
        return;
    }
    if (now.st_dev != read->dev || now.st_ino != read->ino) return;
    if (S_ISDIR(now.st_mode)) rmdir(path);
    else unlink(path);
}

moejit_status mj_cache_load(mj_cache *c, const char *key_hex, const void *key_record, size_t key_record_len,
                            mj_cache_blob *out)
{
    memset(out, 0, sizeof *out);
    if (!mj_cache_readable(c)) return mj_fail(MOEJIT_ERR_NOT_FOUND, "the disk cache is off");
    char path[4200];
    if (mj_cache_entry_path(c, key_hex, path, sizeof path))
        return mj_fail(MOEJIT_ERR_IO, "cache path too long under %s", c->root);
    int fd = -1;
    moejit_status st = read_whole(path, out, &fd);
    if (st == MOEJIT_ERR_CORRUPT) { /* not a regular file, or over the size limit */
        remove_bad(c, path, out);
        mj_cache_blob_free(out);
    }
    if (st != MOEJIT_OK) return st;
    st = mj_entry_decode(out->data, out->len, &out->view);
    if (st == MOEJIT_OK && key_record &&
        (out->view.key_record_len != key_record_len || memcmp(out->view.key_record, key_record, key_record_len)))
        st = mj_fail(MOEJIT_ERR_CORRUPT, "entry's key record differs from the expected one (hash collision or a file "
                                         "stored under another key's name)");
    if (st != MOEJIT_OK) {
        mj_error_append(": %s", path);
        remove_bad(c, path, out);
        mj_cache_blob_free(out);
    } else if (mj_cache_writable(c)) {
        (void)futimens(fd, NULL); /* explicit last-use stamp for gc (never atime) */
    }
    close(fd);
    return st;
}

int mj_mkdir_p(const char *path, mode_t mode)
{
    char *p = strdup(path);
    if (!p) return -1;
    int rc = 0;
    for (char *q = p + 1; *q && rc == 0; q++) {
        if (*q != '/') continue;
        *q = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) rc = -1;
        *q = '/';
    }
    if (rc == 0 && mkdir(p, mode) != 0 && errno != EEXIST) rc = -1;
    struct stat st;
    if (rc == 0 && stat(p, &st) != 0) rc = -1;
    else if (rc == 0 && !S_ISDIR(st.st_mode)) errno = ENOTDIR, rc = -1; /* EEXIST was a file */
    const int err = errno;
    free(p);
    errno = err;
    return rc;
}

static int store_mkdir(const char *path) { return MJ_FAULT(MJ_FAULT_MKDIR) ? -1 : mj_mkdir_p(path, 0777); }

/* ENOTDIR names no file: find the first component of `path` that exists and is not a directory
 * (a cache directory set to a regular file, or a path under one). */
static void not_a_directory(const char *path, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", strerror(ENOTDIR));
    char *p = strdup(path);
    if (!p) return;
    for (char *q = p + 1;; q++) {
        const char c = *q;
        if (c != '/' && c != '\0') continue;
        *q = '\0';
        struct stat st;
        if (stat(p, &st) == 0 && !S_ISDIR(st.st_mode)) {
            snprintf(buf, cap, "%s is not a directory", p);
            break;
        }
        *q = c;
        if (!c) break;
    }
    free(p);
}

static moejit_status write_failed(mj_cache *c, const char *what, const char *path, int err)
{
    char why[4400];
    if (err == ENOTDIR) not_a_directory(path, why, sizeof why);
    else snprintf(why, sizeof why, "%s", strerror(err));
    atomic_fetch_add(&c->write_errors, 1);
    if (!atomic_exchange(&c->write_failed, 1)) {
        snprintf(c->write_error, sizeof c->write_error, "%s %s: %s", what, path, why);
        atomic_store(&c->write_error_set, 1);
        mj_warn("cache directory %s is not writable (%s %s: %s); continuing with the in-memory cache only", c->root,
                what, path, why);
    }
    return mj_fail(MOEJIT_ERR_IO, "%s %s: %s", what, path, why);
}

const char *mj_cache_write_error(const mj_cache *c)
{
    if (atomic_load(&c->write_error_set)) return c->write_error;
    return atomic_load(&c->write_failed) ? "a write to the cache failed" : "";
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    if (MJ_FAULT(MJ_FAULT_WRITE)) {
        const int err = errno; /* a full disk takes part of the data, then refuses the rest */
        if (n > 1 && write(fd, p, n / 2) < 0) return -1;
        errno = err;
        return -1;
    }
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Per-process random bits for temp names: pids repeat across the hosts of an NFS mount and
 * across containers sharing a volume. */
static uint64_t process_nonce(void)
{
    static atomic_ullong nonce;
    static atomic_int nonce_pid;
    const int pid = (int)getpid();
    if (atomic_load(&nonce_pid) != pid) { /* first use, or a forked child */
        uint64_t v = 0;
        if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            v = ((uint64_t)t.tv_nsec << 32) ^ (uint64_t)t.tv_sec ^ ((uint64_t)pid << 16) ^ (uint64_t)(uintptr_t)&t;
        }
        atomic_store(&nonce, v);
        atomic_store(&nonce_pid, pid);
    }
    return atomic_load(&nonce);
}

/* The temp file of a publish, created O_EXCL under a name no other writer uses. A name that
 * exists anyway (EEXIST: a reused pid and an unlucky nonce) is retried, not a write failure. */
static int create_temp(mj_cache *c, const char *key_hex, char *tmp, size_t cap)
{
    for (int attempt = 0;; attempt++) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(tmp, cap, "%s/tmp/%s.%ld.%016llx.%u.%ld.tmp", c->root, key_hex, (long)getpid(),
                 (unsigned long long)process_nonce(), atomic_fetch_add(&g_temp_counter, 1), (long)now.tv_nsec);
        int fd = MJ_FAULT(MJ_FAULT_OPEN_TMP) ? -1 : open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST || attempt == 8) return fd;
    }
}

static double realtime_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

uint64_t mj_cache_sweep_temps(mj_cache *c, double grace_seconds)
{
    if (c->mode == MOEJIT_CACHE_OFF) return 0;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/tmp", c->root);
    DIR *d = opendir(dir);
    if (!d) return 0;
    const double now = realtime_seconds();
    uint64_t removed = 0;
    struct dirent *f;
    while ((f = readdir(d))) {
        const size_t n = strlen(f->d_name);
        if (n < 5 || strcmp(f->d_name + n - 4, ".tmp")) continue;
        char path[4600];
        snprintf(path, sizeof path, "%s/%s", dir, f->d_name);
        struct stat st;
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        const double age = now - ((double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec);
        if (age < grace_seconds) continue;
        if (unlink(path) == 0) removed++;
        else if (errno != ENOENT) mj_warn("cannot remove %s: %s", path, strerror(errno));
    }
    closedir(d);
    atomic_fetch_add(&c->temps_swept, removed);
    return removed;
}

/* The publish path sweeps stale temp files too (left by writers killed mid-publish), so a cache
 * nobody runs `moejit cache gc` on does not collect them: at the first publish of this store and
 * then at most once per MJ_CACHE_TEMP_SWEEP_INTERVAL. Cheap: tmp/ is normally empty. */
static void maybe_sweep(mj_cache *c)
{
    const long long now = (long long)realtime_seconds();
    long long last = atomic_load(&c->last_sweep);
    if (last && now - last < MJ_CACHE_TEMP_SWEEP_INTERVAL) return;
    if (!atomic_compare_exchange_strong(&c->last_sweep, &last, now)) return; /* another thread does it */
    const uint64_t n = mj_cache_sweep_temps(c, MJ_CACHE_TEMP_GRACE_SECONDS);
    if (n) mj_info("removed %llu stale temp file(s) of interrupted publishes from %s/tmp", (unsigned long long)n, c->root);
}

moejit_status mj_cache_publish(mj_cache *c, const char *key_hex, const mj_entry_view *entry)
{
    if (!mj_cache_writable(c)) return mj_fail(MOEJIT_ERR_IO, "the disk cache is not writable");
    char dir[4200], tmp[4300], final_path[4200];
    snprintf(dir, sizeof dir, "%s/tmp", c->root);
    if (store_mkdir(dir) != 0) return write_failed(c, "cannot create", dir, errno);
    snprintf(dir, sizeof dir, "%s/v1/%.2s", c->root, key_hex);
    if (store_mkdir(dir) != 0) return write_failed(c, "cannot create", dir, errno);
    mj_cache_entry_path(c, key_hex, final_path, sizeof final_path);

    uint8_t *blob;
    size_t len;
    moejit_status st = mj_entry_encode(entry, &blob, &len);
    if (st != MOEJIT_OK) return st;
    int fd = create_temp(c, key_hex, tmp, sizeof tmp);
    if (fd < 0) {
        const int err = errno;
        free(blob);
        return write_failed(c, "cannot create", tmp, err);
    }
    int err = 0;
    if (MJ_FAULT_CRASH_ARMED(MJ_CRASH_MID_WRITE)) { /* test-only: killed while writing */
        if (write(fd, blob, len / 2) >= 0) MJ_FAULT_CRASH(MJ_CRASH_MID_WRITE);
    }
    if (write_all(fd, blob, len) != 0) err = errno;
    else if (MJ_FAULT(MJ_FAULT_FSYNC) || fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && !err) err = errno;
    free(blob);
    if (!err) MJ_FAULT_CRASH(MJ_CRASH_BEFORE_RENAME);
    if (!err && (MJ_FAULT(MJ_FAULT_RENAME) || rename(tmp, final_path) != 0)) err = errno;
    if (err) {
        unlink(tmp);
        return write_failed(c, "cannot write", tmp, err);
    }
    maybe_sweep(c);
    return MOEJIT_OK;
}

/* ---- per-key locks ------------------------------------------------------------------------ */

static int lock_path(const mj_cache *c, const char *key_hex, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "%s/locks/%.2s/%s.lock", c->root, key_hex, key_hex + 2);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

static void sleep_ms(double ms)
{
    const long long us = (long long)(ms * 1e3);
    struct timespec t = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

static double monotonic_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int mj_cache_lock_key(mj_cache *c, const char *key_hex, int timeout_ms, mj_cache_lock *out)
{
    memset(out, 0, sizeof *out);
    out->fd = -1;
    if (timeout_ms <= 0 || !mj_cache_writable(c)) return 0;
    char path[4300];
    if (lock_path(c, key_hex, path, sizeof path)) return 0;
    int fd = -1;
    for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
        if (MJ_FAULT(MJ_FAULT_LOCK)) break;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0666);
        if (fd >= 0 || errno != ENOENT || attempt) break;
        char dir[4300];
        snprintf(dir, sizeof dir, "%s/locks/%.2s", c->root, key_hex);
        if (store_mkdir(dir) != 0) break;
    }
    if (fd < 0) {
        out->failed = 1;
        mj_debug("no lock for %s (%s): compiling without it", key_hex, strerror(errno));
        return 0;
    }
    const double t0 = monotonic_seconds(), deadline = t0 + timeout_ms * 1e-3;
    double pause_ms = 1;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK) { /* ENOLCK (NFS without lockd), EINVAL…: best effort, go on */
            out->failed = 1;
            mj_debug("cannot lock %s (%s): compiling without the lock", path, strerror(errno));
            close(fd);
            return 0;
        }
        out->waited = 1;
        const double now = monotonic_seconds();
        if (now >= deadline) {
            out->timed_out = 1;
            out->wait_seconds = now - t0;
            mj_info("waited %.1f s for another process compiling %s (%s); compiling here too", now - t0, key_hex, path);
            close(fd);
            return 0;
        }
        const double left_ms = (deadline - now) * 1e3;
        sleep_ms(pause_ms < left_ms ? pause_ms : left_ms);
        if (pause_ms < 16) pause_ms *= 2;
    }
    out->fd = fd;
    out->wait_seconds = monotonic_seconds() - t0;
    return 1;
}

void mj_cache_unlock_key(mj_cache_lock *l)
{
    if (l->fd >= 0) close(l->fd); /* releases the flock; the file stays (never unlinked) */
    l->fd = -1;
}

void mj_cache_counters_get(const mj_cache *c, mj_cache_counters *out)
{
    out->write_errors = atomic_load(&((mj_cache *)c)->write_errors);
    out->temps_swept = atomic_load(&((mj_cache *)c)->temps_swept);
}

moejit_status mj_cache_remove(mj_cache *c, const char *key_hex)
{
    char path[4200];
    if (mj_cache_entry_path(c, key_hex, path, sizeof path)) return mj_fail(MOEJIT_ERR_IO, "cache path too long");
    if (unlink(path) != 0) {
        if (errno == ENOENT) return mj_fail(MOEJIT_ERR_NOT_FOUND, "no cache entry %s", key_hex);
        return mj_fail(MOEJIT_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    }
    return MOEJIT_OK;
}

void mj_cache_remove_if_same(mj_cache *c, const char *key_hex, const mj_cache_blob *blob)
{
    char path[4200];
    if (mj_cache_entry_path(c, key_hex, path, sizeof path) == 0) remove_bad(c, path, blob);
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

moejit_status mj_cache_foreach(mj_cache *c, mj_cache_visit_fn fn, void *user)
{
    if (c->mode == MOEJIT_CACHE_OFF) return MOEJIT_OK;
    char base[4200];
    snprintf(base, sizeof base, "%s/v1", c->root);
    DIR *top = opendir(base);
    if (!top) return errno == ENOENT ? MOEJIT_OK : mj_fail(MOEJIT_ERR_IO, "cannot list %s: %s", base, strerror(errno));
    struct dirent *d;
    int stop = 0;
    while (!stop && (d = readdir(top))) {
        if (strlen(d->d_name) != 2 || !is_hex(d->d_name, 2)) continue;
        char sub[4300];
        /* The precisions repeat the name lengths checked above, so the compiler sees they fit. */
        snprintf(sub, sizeof sub, "%s/%.2s", base, d->d_name);
        DIR *dd = opendir(sub);
        if (!dd) continue;
        struct dirent *f;
        while (!stop && (f = readdir(dd))) {
            /* 30 hex digits + ".mjc" */
            if (strlen(f->d_name) != 34 || strcmp(f->d_name + 30, ".mjc") || !is_hex(f->d_name, 30)) continue;
            char key[33], path[4400];
            snprintf(key, sizeof key, "%.2s%.30s", d->d_name, f->d_name);
            snprintf(path, sizeof path, "%s/%.34s", sub, f->d_name);
            struct stat st;
            if (stat(path, &st) != 0) continue;
            stop = fn(key, path, &st, user);
        }
        closedir(dd);
    }
    closedir(top);
    return MOEJIT_OK;
}

moejit_status mj_cache_peek(const char *path, mj_entry_summary *sum, char *meta, size_t cap)
{
    memset(sum, 0, sizeof *sum);
    if (cap) meta[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return mj_fail(errno == ENOENT ? MOEJIT_ERR_NOT_FOUND : MOEJIT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    uint8_t head[MJ_ENTRY_HEADER_SIZE];
    struct stat st;
    mj_entry_header h;
    moejit_status rc = MOEJIT_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = mj_fail(MOEJIT_ERR_CORRUPT, "%s: not a regular file", path);
    else if (pread(fd, head, sizeof head, 0) != (ssize_t)sizeof head)
        rc = mj_fail(MOEJIT_ERR_CORRUPT, "%s: shorter than an entry header", path);
    else if ((rc = mj_entry_header_parse(head, &h)) != MOEJIT_OK)
        mj_error_append(": %s", path);
    else if (h.key_record_len > (uint64_t)st.st_size || h.meta_len > (uint64_t)st.st_size)
        rc = mj_fail(MOEJIT_ERR_CORRUPT, "%s: section lengths exceed the file", path);
    if (rc == MOEJIT_OK) {
        sum->file_size = (uint64_t)st.st_size;
        sum->source_len = h.source_len;
        sum->cubin_len = h.cubin_len;
        sum->created = h.created;
        if (cap) {
            size_t n = h.meta_len < cap - 1 ? (size_t)h.meta_len : cap - 1;
            ssize_t r = pread(fd, meta, n, (off_t)(MJ_ENTRY_HEADER_SIZE + h.key_record_len));
            meta[r > 0 ? (size_t)r : 0] = '\0';
        }
    }
    close(fd);
    return rc;
}
