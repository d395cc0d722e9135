#include "jit/key.h"

#include <stdlib.h>
#include <string.h>
#include "common/hash.h"

#include "common/error.h"
#include "common/strbuf.h"

moejit_status mj_key_build(const char *source, size_t source_len, const mj_compile_options *options,
                           const char *arch, const mj_nvrtc_identity *nvrtc, mj_key *out)
{
    memset(out, 0, sizeof *out);
    mj_strbuf sb;
    mj_sb_init(&sb);
    mj_sb_field(&sb, MJ_KEY_SCHEMA, strlen(MJ_KEY_SCHEMA));
    mj_sb_field(&sb, MOEJIT_VERSION_STRING, strlen(MOEJIT_VERSION_STRING));
    mj_sb_field(&sb, source, source_len);
    mj_sb_field(&sb, options->key_text, strlen(options->key_text));
    mj_sb_field(&sb, arch, strlen(arch));
    mj_sb_field(&sb, nvrtc->version, strlen(nvrtc->version));
    mj_sb_field(&sb, nvrtc->build_id, strlen(nvrtc->build_id));
    if (!mj_sb_ok(&sb)) {
        mj_sb_free(&sb);
        return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory building a cache key");
    }
    out->record = (uint8_t *)mj_sb_take(&sb, &out->record_len);
    mj_entry_key_of(out->record, out->record_len, out->hex);
    return MOEJIT_OK;
}

int mj_key_record_field(const uint8_t *record, size_t len, int i, const uint8_t **field, size_t *field_len)
{
    size_t at = 0;
    for (int f = 0;; f++) {
        if (len - at < 8) return -1;
        uint64_t n = 0;
        for (int b = 7; b >= 0; b--) n = (n << 8) | record[at + (size_t)b];
        at += 8;
        if (n > len - at) return -1;
        if (f == i) {
            *field = record + at;
            *field_len = (size_t)n;
            return 0;
        }
        at += (size_t)n;
    }
}

void mj_key_free(mj_key *key)
{
    free(key->record);
    memset(key, 0, sizeof *key);
}
