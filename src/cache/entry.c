#include "cache/entry.h"

#include <stdlib.h>
#include <string.h>
#include "common/hash.h"

#include "common/error.h"

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

moejit_status mj_entry_encode(const mj_entry_view *in, uint8_t **blob, size_t *len)
{
    const size_t total = MJ_ENTRY_HEADER_SIZE + in->key_record_len + in->meta_len + in->source_len + in->cubin_len + 8;
    uint8_t *b = malloc(total);
    if (!b) return mj_fail(MOEJIT_ERR_OUT_OF_MEMORY, "out of memory encoding a %zu-byte cache entry", total);
    memset(b, 0, MJ_ENTRY_HEADER_SIZE);
    memcpy(b, MJ_ENTRY_MAGIC, 8);
    put_u32(b + 8, MJ_ENTRY_FORMAT);
    put_u32(b + 12, MJ_ENTRY_HEADER_SIZE);
    put_u64(b + 16, in->key_record_len);
    put_u64(b + 24, in->meta_len);
    put_u64(b + 32, in->source_len);
    put_u64(b + 40, in->cubin_len);
    put_u64(b + 48, in->created);
    uint8_t *p = b + MJ_ENTRY_HEADER_SIZE;
    memcpy(p, in->key_record, in->key_record_len), p += in->key_record_len;
    memcpy(p, in->meta, in->meta_len), p += in->meta_len;
    memcpy(p, in->source, in->source_len), p += in->source_len;
    memcpy(p, in->cubin, in->cubin_len), p += in->cubin_len;
    put_u64(p, XXH3_64bits(b, total - 8));
    *blob = b;
    *len = total;
    return MOEJIT_OK;
}

moejit_status mj_entry_header_parse(const uint8_t *head, mj_entry_header *out)
{
    if (memcmp(head, MJ_ENTRY_MAGIC, 8)) return mj_fail(MOEJIT_ERR_CORRUPT, "entry has a wrong magic number");
    if (get_u32(head + 8) != MJ_ENTRY_FORMAT)
        return mj_fail(MOEJIT_ERR_CORRUPT, "entry format %u, expected %u", get_u32(head + 8), MJ_ENTRY_FORMAT);
    if (get_u32(head + 12) != MJ_ENTRY_HEADER_SIZE)
        return mj_fail(MOEJIT_ERR_CORRUPT, "entry header size %u, expected %u", get_u32(head + 12), MJ_ENTRY_HEADER_SIZE);
    out->key_record_len = get_u64(head + 16);
    out->meta_len = get_u64(head + 24);
    out->source_len = get_u64(head + 32);
    out->cubin_len = get_u64(head + 40);
    out->created = get_u64(head + 48);
    return MOEJIT_OK;
}

moejit_status mj_entry_decode(const uint8_t *blob, size_t len, mj_entry_view *out)
{
    memset(out, 0, sizeof *out);
    if (len < MJ_ENTRY_HEADER_SIZE + 8)
        return mj_fail(MOEJIT_ERR_CORRUPT, "entry is %zu bytes, shorter than its fixed %u-byte frame", len,
                       MJ_ENTRY_HEADER_SIZE + 8);
    mj_entry_header h;
    moejit_status st = mj_entry_header_parse(blob, &h);
    if (st != MOEJIT_OK) return st;
    const uint64_t k = h.key_record_len, m = h.meta_len, s = h.source_len, c = h.cubin_len;
    /* Each length is bounded before adding, so the sum cannot wrap. */
    if (k > len || m > len || s > len || c > len || MJ_ENTRY_HEADER_SIZE + k + m + s + c + 8 != len)
        return mj_fail(MOEJIT_ERR_CORRUPT, "entry section lengths (%llu, %llu, %llu, %llu) do not add up to its %zu bytes",
                       (unsigned long long)k, (unsigned long long)m, (unsigned long long)s, (unsigned long long)c, len);
    if (get_u64(blob + len - 8) != XXH3_64bits(blob, len - 8))
        return mj_fail(MOEJIT_ERR_CORRUPT, "entry checksum mismatch");
    const uint8_t *p = blob + MJ_ENTRY_HEADER_SIZE;
    out->key_record = p, out->key_record_len = (size_t)k, p += k;
    out->meta = (const char *)p, out->meta_len = (size_t)m, p += m;
    out->source = (const char *)p, out->source_len = (size_t)s, p += s;
    out->cubin = p, out->cubin_len = (size_t)c;
    out->created = h.created;
    return MOEJIT_OK;
}

int mj_meta_get(const char *meta, size_t meta_len, const char *field, char *out, size_t cap)
{
    const size_t flen = strlen(field);
    size_t at = 0;
    while (at < meta_len) {
        const char *line = meta + at;
        const char *nl = memchr(line, '\n', meta_len - at);
        size_t n = nl ? (size_t)(nl - line) : meta_len - at;
        if (n > flen && !memcmp(line, field, flen) && line[flen] == '=') {
            size_t v = n - flen - 1;
            if (cap) {
                if (v >= cap) v = cap - 1;
                memcpy(out, line + flen + 1, v);
                out[v] = '\0';
            }
            return 1;
        }
        at += n + 1;
    }
    if (cap) out[0] = '\0';
    return 0;
}

void mj_entry_key_of(const void *record, size_t len, char hex[33])
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

int mj_entry_key_valid(const char *s)
{
    if (!s) return 0;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[32] == '\0';
}
