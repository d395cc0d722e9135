/* The on-disk store: <root>/v1/<2 hex>/<30 hex>.mjc, temp files in <root>/tmp/.
 *
 * Readers take no locks: an entry is published by writing a temp file opened O_EXCL, fsync and
 * rename(), so a reader sees either nothing or a complete file, which it still verifies in full.
 * Failures to write (read-only dir, EACCES, ENOSPC…) warn once and turn the store read-only for
 * the rest of the process: the caller keeps the cubin in memory and carries on. */
#ifndef MOEJIT_CACHE_STORE_H
#define MOEJIT_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "entry.h"

typedef struct mj_cache mj_cache;

/* mode: MOEJIT_CACHE_RW, _RO or _OFF. The directory is created lazily, on first publish. */
moejit_status mj_cache_open(const char *root, moejit_cache_mode mode, mj_cache **out);
void mj_cache_close(mj_cache *c);

const char *mj_cache_root(const mj_cache *c);
int mj_cache_readable(const mj_cache *c);
int mj_cache_writable(const mj_cache *c);

/* A loaded entry: the whole file and a verified view into it. */
typedef struct mj_cache_blob {
    uint8_t *data;
    size_t len;
    mj_entry_view view;
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
