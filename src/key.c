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
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(out->record, out->record_len));
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out->hex[2 * i] = digits[c.digest[i] >> 4];
        out->hex[2 * i + 1] = digits[c.digest[i] & 15];
    }
    out->hex[32] = '\0';
    return MOEJIT_OK;
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
