/* The on-disk store: <root>/v1/<2 hex>/<30 hex>.mjc, temp files in <root>/tmp/, per-key lock
 * files in <root>/locks/<2 hex>/<30 hex>.lock.
 *
 * Readers take no locks: an entry is published by writing a temp file opened O_EXCL, fsync and
 * rename(), so a reader sees either nothing or a complete file, which it still verifies in full.
 * Failures to write (read-only dir, EACCES, ENOSPC…) warn once and turn the store read-only for
 * the rest of the process: the caller keeps the cubin in memory and carries on.
 *
 * Writers may take a best-effort per-key lock around "look again, compile, publish" so that
 * processes racing on a cold key compile it once; the lock only saves work, correctness never
 * depends on it (a publish is atomic either way). */
#ifndef MOEJIT_CACHE_STORE_H
#define MOEJIT_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "cache/entry.h"

typedef struct mj_cache mj_cache;

/* mode: MOEJIT_CACHE_RW, _RO or _OFF. The directory is created lazily, on first publish. */
moejit_status mj_cache_open(const char *root, moejit_cache_mode mode, mj_cache **out);
void mj_cache_close(mj_cache *c);

const char *mj_cache_root(const mj_cache *c);
int mj_cache_readable(const mj_cache *c);
int mj_cache_writable(const mj_cache *c);
/* What made a read-write store stop writing (the first failed write: "cannot create
 * /srv/cache/tmp: /srv/cache is not a directory"), or "" while none failed. */
const char *mj_cache_write_error(const mj_cache *c);

/* mkdir -p: create path and its missing parents with `mode`. Returns 0, or -1 with errno. */
int mj_mkdir_p(const char *path, mode_t mode);

/* A loaded entry: the whole file and a verified view into it. */
typedef struct mj_cache_blob {
    uint8_t *data;
    size_t len;
    mj_entry_view view;
    dev_t dev; /* the file read, so that removing a bad entry never removes a newer one */
    ino_t ino;
} mj_cache_blob;

void mj_cache_blob_free(mj_cache_blob *b);

/* Path of a key's entry file. Returns 0, or -1 if it does not fit. */
int mj_cache_entry_path(const mj_cache *c, const char *key_hex, char *buf, size_t cap);

/* Read and verify the entry of key_hex. When key_record is not NULL it must equal the stored one.
 *   MOEJIT_OK            hit; *out holds the entry (the last-use stamp is refreshed when writable)
 *   MOEJIT_ERR_NOT_FOUND no entry
 *   MOEJIT_ERR_CORRUPT   an entry was there but failed verification; it was removed if writable
 *   MOEJIT_ERR_IO        it could not be read */
moejit_status mj_cache_load(mj_cache *c, const char *key_hex, const void *key_record, size_t key_record_len,
                            mj_cache_blob *out);

/* Publish an entry atomically. A failure is returned (and warned about once) but leaves the
 * store consistent; callers may ignore it. */
moejit_status mj_cache_publish(mj_cache *c, const char *key_hex, const mj_entry_view *entry);

/* Remove an entry (MOEJIT_ERR_NOT_FOUND if absent). */
moejit_status mj_cache_remove(mj_cache *c, const char *key_hex);

/* Remove the entry of key_hex only if it is still the file `blob` was read from (a publisher may
 * have renamed a good entry over it since). */
void mj_cache_remove_if_same(mj_cache *c, const char *key_hex, const mj_cache_blob *blob);

/* ---- temp files ---- */

/* Temp files (<root>/tmp/ *.tmp) older than this are left over from a crashed publish: no live
 * writer takes an hour to write and fsync at most MJ_ENTRY_MAX_BYTES. */
#define MJ_CACHE_TEMP_GRACE_SECONDS 3600.0
/* How often the publish path sweeps them (also at the first publish of each store). */
#define MJ_CACHE_TEMP_SWEEP_INTERVAL 3600

/* Remove temp files older than grace_seconds (by mtime). Returns how many were removed. */
uint64_t mj_cache_sweep_temps(mj_cache *c, double grace_seconds);

/* ---- per-key locks ---- */

typedef struct mj_cache_lock {
    int fd;              /* >= 0 while held */
    int waited;          /* another process held it when we asked */
    int timed_out;       /* gave up after timeout_ms */
    int failed;          /* no lock could be had (read-only, ENOLCK on NFS…): not an error */
    double wait_seconds;
} mj_cache_lock;

/* Take the exclusive lock of key_hex (flock on its lock file, created on demand and never
 * unlinked), waiting at most timeout_ms (polling). Returns 1 when held; 0 when not — disabled
 * (timeout_ms <= 0), the store not writable, a failure or the timeout, as recorded in *out.
 * Never fatal: the caller compiles either way. A crashed holder's lock is released by the kernel. */
int mj_cache_lock_key(mj_cache *c, const char *key_hex, int timeout_ms, mj_cache_lock *out);
void mj_cache_unlock_key(mj_cache_lock *l);

/* Counters of this store since it was opened. */
typedef struct mj_cache_counters {
    uint64_t write_errors; /* failed publishes (the first one warned) */
    uint64_t temps_swept;  /* stale temp files removed */
} mj_cache_counters;
void mj_cache_counters_get(const mj_cache *c, mj_cache_counters *out);

/* Visit every entry file (in no particular order). The callback returns non-zero to stop. */
typedef int (*mj_cache_visit_fn)(const char *key_hex, const char *path, const struct stat *st, void *user);
moejit_status mj_cache_foreach(mj_cache *c, mj_cache_visit_fn fn, void *user);

/* Read and verify a file by path, without any key check (for `cache verify`, `show`). */
moejit_status mj_cache_read_file(const char *path, mj_cache_blob *out);

/* Header and metadata of an entry file without reading or verifying the payload (for listings;
 * `verify` reads everything). meta is NUL-terminated, truncated to cap-1. */
typedef struct mj_entry_summary {
    uint64_t file_size;
    uint64_t created;
    uint64_t source_len;
    uint64_t cubin_len;
} mj_entry_summary;
moejit_status mj_cache_peek(const char *path, mj_entry_summary *sum, char *meta, size_t cap);

#endif
