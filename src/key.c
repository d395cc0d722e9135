#include "key.h"

#include <stdlib.h>
#include <string.h>
#include "hash.h"

#include "error.h"
#include "strbuf.h"

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
    mj_key_hex_of(out->record, out->record_len, out->hex);
    return MOEJIT_OK;
}

void mj_key_hex_of(const void *record, size_t len, char hex[33])
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(record, len));
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[c.digest[i] >> 4];
        hex[2 * i + 1] = digits[c.digest[i] & 15];
    }
    hex[32] = '\0';
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

int mj_key_hex_valid(const char *s)
{
    if (!s) return 0;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[32] == '\0';
}
