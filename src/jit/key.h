/* Cache keys: XXH3-128 over a length-prefixed record of everything that determines the cubin —
 * key schema, library version, generated source, normalised options, arch, NVRTC version and
 * build id. Never the driver, device, host, time or paths: a cache prewarmed on a build box
 * without a GPU is valid on the GPU host. The generated source is self-contained (the templates
 * are pasted in), so no header hashes are needed. */
#ifndef MOEJIT_KEY_H
#define MOEJIT_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "cache/entry.h"
#include "jit/nvrtc.h"

#define MJ_KEY_SCHEMA "moejit-key-1"

typedef struct mj_key {
    char hex[33];      /* 32 lowercase hex digits */
    uint8_t *record;   /* malloc'ed record that was hashed; stored in the entry and compared on load */
    size_t record_len;
} mj_key;

moejit_status mj_key_build(const char *source, size_t source_len, const mj_compile_options *options,
                           const char *arch, const mj_nvrtc_identity *nvrtc, mj_key *out);
void mj_key_free(mj_key *key);


/* Fields of a key record, in order. */
enum { MJ_KEY_FIELD_SCHEMA, MJ_KEY_FIELD_LIBRARY, MJ_KEY_FIELD_SOURCE, MJ_KEY_FIELD_OPTIONS, MJ_KEY_FIELD_ARCH,
       MJ_KEY_FIELD_NVRTC_VERSION, MJ_KEY_FIELD_NVRTC_BUILD, MJ_KEY_FIELDS };

/* Field `i` of a record (pointers into it). Returns 0, or -1 if the record does not hold it. */
int mj_key_record_field(const uint8_t *record, size_t len, int i, const uint8_t **field, size_t *field_len);


#endif
