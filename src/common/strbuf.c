#include "common/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mj_sb_init(mj_strbuf *sb) { memset(sb, 0, sizeof *sb); }

void mj_sb_free(mj_strbuf *sb)
{
    free(sb->data);
    mj_sb_init(sb);
}

static int grow(mj_strbuf *sb, size_t extra)
{
    if (sb->failed) return 0;
    if (sb->len + extra + 1 <= sb->cap) return 1;
    size_t cap = sb->cap ? sb->cap : 1024;
    while (cap < sb->len + extra + 1) cap *= 2;
    char *d = realloc(sb->data, cap);
    if (!d) {
        sb->failed = 1;
        return 0;
    }
    sb->data = d;
    sb->cap = cap;
    return 1;
}

void mj_sb_append(mj_strbuf *sb, const void *bytes, size_t n)
{
    if (!grow(sb, n)) return;
    if (n) memcpy(sb->data + sb->len, bytes, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void mj_sb_puts(mj_strbuf *sb, const char *s) { mj_sb_append(sb, s, strlen(s)); }

void mj_sb_printf(mj_strbuf *sb, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n >= 0 && grow(sb, (size_t)n)) {
        vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
        sb->len += (size_t)n;
    } else if (n < 0) {
        sb->failed = 1;
    }
    va_end(ap);
}

void mj_sb_u64le(mj_strbuf *sb, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    mj_sb_append(sb, b, 8);
}

void mj_sb_field(mj_strbuf *sb, const void *bytes, size_t n)
{
    mj_sb_u64le(sb, n);
    mj_sb_append(sb, bytes, n);
}

int mj_sb_ok(const mj_strbuf *sb) { return !sb->failed && sb->data != NULL; }

void mj_appendf(char *buf, size_t cap, int *len, const char *fmt, ...)
{
    const size_t at = (size_t)*len < cap ? (size_t)*len : cap;
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(buf + at, cap - at, fmt, ap);
    va_end(ap);
    if (n > 0) *len += n;
}

char *mj_sb_take(mj_strbuf *sb, size_t *len)
{
    char *d = sb->data;
    if (len) *len = sb->len;
    mj_sb_init(sb);
    return d;
}
