/* Maintenance of the on-disk store (library-internal; the `moejit cache` commands and the
 * MOEJIT_CACHE_MAX_BYTES limit are built on these): key-prefix lookup, full verification,
 * least-recently-used eviction, stale temp-file removal, clearing.
 *
 * Concurrency: all of these may run while other processes read and publish. They only ever
 * unlink regular files (never directories: a publisher may be between its mkdir and its rename),
 * an unlink that loses a race (ENOENT) is not an error, and temp files are removed only once
 * they are older than a grace period (a fresh one belongs to a publish in flight). A reader that
 * already opened an entry keeps reading it after the unlink. */
#ifndef MOEJIT_CACHE_MAINTENANCE_H
#define MOEJIT_CACHE_MAINTENANCE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cache/store.h"

/* The full key of the one entry whose key starts with `prefix` (1..32 hex digits, either case).
 *   MOEJIT_OK                    key_out holds the 32-digit key
 *   MOEJIT_ERR_INVALID_ARGUMENT  prefix is empty, too long or not hex
 *   MOEJIT_ERR_NOT_FOUND         no entry matches
 *   MOEJIT_ERR_AMBIGUOUS         several match; the detail lists (some of) them */
moejit_status mj_cache_find_prefix(mj_cache *c, const char *prefix, char key_out[33]);

/* ---- verify --------------------------------------------------------------------------------- */

/* Full check of one entry file: readable, within the size limit, structure and XXH3-64 checksum,
 * the key record hashes to the file's name, an "entry=" name in the metadata, and a non-empty
 * cubin that is an ELF image. MOEJIT_ERR_CORRUPT (or _IO) with the reason in the error detail. */
moejit_status mj_cache_check_entry(const char *key_hex, const char *path);

typedef struct mj_cache_verify_stats {
    size_t checked, bad, removed;
} mj_cache_verify_stats;

/* Called for every entry checked: status MOEJIT_OK or the failure (detail: its reason);
 * removed = 1 when the bad entry was deleted. */
typedef void (*mj_cache_verify_fn)(const char *key_hex, const char *path, moejit_status status, const char *detail,
                                   int removed, void *user);

/* Check every entry; with remove_bad, delete the bad ones (the store must be writable). */
moejit_status mj_cache_verify(mj_cache *c, int remove_bad, mj_cache_verify_fn fn, void *user,
                              mj_cache_verify_stats *out);

/* ---- gc --------------------------------------------------------------------------------------- */

typedef struct mj_cache_gc_stats {
    uint64_t entries_before, bytes_before; /* entries and their total size before */
    uint64_t entries_removed, bytes_removed;
    uint64_t entries_after, bytes_after;
    uint64_t temps_removed;                /* stale temp files deleted */
} mj_cache_gc_stats;

/* Called for each entry removed, with its size and last-use stamp. */
typedef void (*mj_cache_gc_fn)(const char *key_hex, uint64_t bytes, time_t last_use, void *user);

/* Keep the entries' total size at most max_bytes (0: no limit, only temp files are swept) by
 * removing the least recently used first. "Used" is the entry's mtime: the explicit stamp that
 * publish sets and every disk hit refreshes (futimens), never atime; equal stamps go oldest key
 * first. keep_key (may be NULL) is never removed: the entry just published. Temp files older
 * than temp_grace_seconds are removed too. The store must be writable. */
moejit_status mj_cache_gc(mj_cache *c, uint64_t max_bytes, const char *keep_key, double temp_grace_seconds,
                          mj_cache_gc_fn fn, void *user, mj_cache_gc_stats *out);

/* Remove every entry (and the temp files older than the grace period). The directories stay. */
moejit_status mj_cache_clear(mj_cache *c, uint64_t *entries_removed, uint64_t *bytes_removed);

/* ---- sizes ------------------------------------------------------------------------------------ */

/* Parse a byte count: digits with an optional binary unit K, M, G or T (also KB/KiB…, either
 * case): "1048576", "512M", "2GiB". 0 on success, -1 on bad text or overflow. */
int mj_parse_size(const char *text, uint64_t *out);

#endif
