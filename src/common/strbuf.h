/* A growable byte string. Allocation failure is sticky: check mj_sb_ok() once at the end. */
#ifndef MOEJIT_STRBUF_H
#define MOEJIT_STRBUF_H

#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

typedef struct mj_strbuf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} mj_strbuf;

void mj_sb_init(mj_strbuf *sb);
void mj_sb_free(mj_strbuf *sb);
void mj_sb_append(mj_strbuf *sb, const void *bytes, size_t n);
void mj_sb_puts(mj_strbuf *sb, const char *s);
void mj_sb_printf(mj_strbuf *sb, const char *fmt, ...) MJ_PRINTF(2, 3);
void mj_sb_u64le(mj_strbuf *sb, uint64_t v);
/* Length-prefixed field: u64 little-endian length, then the bytes. */
void mj_sb_field(mj_strbuf *sb, const void *bytes, size_t n);
int mj_sb_ok(const mj_strbuf *sb);
/* Hand the NUL-terminated buffer to the caller (who frees it); the strbuf is reset. */
char *mj_sb_take(mj_strbuf *sb, size_t *len);

/* snprintf that appends at buf+*len and keeps *len the would-be length (for building names in a
 * fixed buffer: the caller compares the final length with the capacity). */
void mj_appendf(char *buf, size_t cap, int *len, const char *fmt, ...) MJ_PRINTF(4, 5);

#endif
