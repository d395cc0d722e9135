/* The cache entry file format (v1), one file per kernel:
 *
 *   offset  size  field
 *        0     8  magic "MOEJITC\x01"
 *        8     4  format version (1), little-endian
 *       12     4  header size (64)
 *       16     8  key record length   K
 *       24     8  metadata length     M   ("name=value\n" lines: entry, op, shape, arch, …)
 *       32     8  source length       S
 *       40     8  cubin length        C
 *       48     8  created (Unix seconds)
 *       56     8  reserved (0)
 *       64     K  key record (compared byte for byte on load: a hash collision can never run
 *                 the wrong kernel)
 *             M  metadata
 *             S  generated source (for inspection)
 *             C  cubin
 *   64+K+M+S+C 8  XXH3-64 of every byte before it
 *
 * Any deviation — short file, wrong magic or version, sizes that do not add up, checksum — makes
 * the entry corrupt. Readers trust nothing in a file they did not verify. */
#ifndef MOEJIT_CACHE_ENTRY_H
#define MOEJIT_CACHE_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "moejit.h"

#define MJ_ENTRY_MAGIC "MOEJITC\x01"
#define MJ_ENTRY_FORMAT 1u
#define MJ_ENTRY_HEADER_SIZE 64u
#define MJ_ENTRY_MAX_BYTES (256u << 20) /* refuse to read anything larger */

/* Pointers into an entry blob (or, for encoding, into the caller's buffers). */
typedef struct mj_entry_view {
    const uint8_t *key_record;
    size_t key_record_len;
    const char *meta;
    size_t meta_len;
    const char *source;
    size_t source_len;
    const uint8_t *cubin;
    size_t cubin_len;
    uint64_t created;
} mj_entry_view;

/* The fixed header fields. */
typedef struct mj_entry_header {
    uint64_t key_record_len, meta_len, source_len, cubin_len, created;
} mj_entry_header;

/* Check magic, format and header size of the first MJ_ENTRY_HEADER_SIZE bytes and read the
 * fields (lengths are not checked against any file size here). */
moejit_status mj_entry_header_parse(const uint8_t *head, mj_entry_header *out);

/* Serialise an entry into a malloc'ed blob. */
moejit_status mj_entry_encode(const mj_entry_view *in, uint8_t **blob, size_t *len);

/* Parse and verify a blob (structure and checksum, not the key). MOEJIT_ERR_CORRUPT with the
 * reason in the error detail. The view points into blob. */
moejit_status mj_entry_decode(const uint8_t *blob, size_t len, mj_entry_view *out);

/* Value of "field=" in metadata into out. Returns 1 if found (truncated to cap-1). */
int mj_meta_get(const char *meta, size_t meta_len, const char *field, char *out, size_t cap);

/* An entry's key: XXH3-128 of its key record, canonical (big-endian) bytes as 32 lowercase hex
 * digits — also its file name (v1/<2 hex>/<30 hex>.mjc). */
void mj_entry_key_of(const void *record, size_t len, char hex[33]);

/* 1 if s is a full 32-digit lowercase hex key. */
int mj_entry_key_valid(const char *s);

#endif
