/* Thread-local error detail. The buffer grows to hold long NVRTC logs and is freed at thread exit. */
#include "common/error.h"

#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct error_buf {
    char *text;
    size_t len;
    size_t cap;
} error_buf;

static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* The thread's buffer once it has one: clearing it (every public call does) is a load and a test. */
static _Thread_local error_buf *t_buf;

static void free_buf(void *p)
{
    error_buf *b = p;
    t_buf = NULL; /* thread exit: a later destructor's moejit call gets a new buffer, not this one */
    if (b) free(b->text);
    free(b);
}

static void make_key(void) { (void)pthread_key_create(&g_key, free_buf); }

static error_buf *thread_buf(void)
{
    if (t_buf) return t_buf;
    pthread_once(&g_once, make_key);
    error_buf *b = pthread_getspecific(g_key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        pthread_setspecific(g_key, b); /* frees it at thread exit */
    }
    t_buf = b;
    return b;
}

static int reserve(error_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *t = realloc(b->text, cap);
    if (!t) return 0;
    b->text = t;
    b->cap = cap;
    return 1;
}

static void vappend(error_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || !reserve(b, (size_t)n)) return;
    vsnprintf(b->text + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

moejit_status mj_fail(moejit_status status, const char *fmt, ...)
{
    error_buf *b = thread_buf();
    if (!b) return status;
    b->len = 0;
    if (b->text) b->text[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vappend(b, fmt, ap);
    va_end(ap);
    return status;
}

void mj_error_append(const char *fmt, ...)
{
    error_buf *b = thread_buf();
    if (!b) return;
    va_list ap;
    va_start(ap, fmt);
    vappend(b, fmt, ap);
    va_end(ap);
}

void mj_error_append_raw(const char *text, size_t len)
{
    error_buf *b = thread_buf();
    if (!b || !reserve(b, len)) return;
    memcpy(b->text + b->len, text, len);
    b->len += len;
    b->text[b->len] = '\0';
}

moejit_status mj_check_reserved(const char *what, const char *field, const void *words, size_t count, size_t size)
{
    const unsigned char *b = words;
    for (size_t i = 0; i < count; i++) {
        uint64_t v = 0;
        memcpy(&v, b + i * size, size); /* only whether it is zero matters */
        if (!v) continue;
        char name[64];
        if (count == 1) snprintf(name, sizeof name, "%s", field);
        else snprintf(name, sizeof name, "%s[%zu]", field, i);
        return mj_fail(MOEJIT_ERR_UNSUPPORTED,
                       "%s: %s = %#llx must be 0 (a field of a newer moejit.h than this library, %s: build "
                       "against this library's header)",
                       what, name, (unsigned long long)v, MOEJIT_VERSION_STRING);
    }
    return MOEJIT_OK;
}

moejit_status mj_check_pointer(const char *op, const char *name, const void *p, size_t align)
{
    if (!p) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: %s is NULL", op, name);
    if ((uintptr_t)p % align)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: %s = %p is not aligned to %zu bytes", op, name, p, align);
    return MOEJIT_OK;
}

void mj_error_clear(void)
{
    error_buf *b = t_buf; /* none yet: nothing to clear */
    if (b && b->text) {
        b->len = 0;
        b->text[0] = '\0';
    }
}

const char *mj_error_text(void)
{
    error_buf *b = thread_buf();
    return (b && b->text) ? b->text : "";
}

moejit_status mj_check_spec_count(const char *what, const char *field, int v, int lo, int max)
{
    if (v < lo) return mj_fail(MOEJIT_ERR_INVALID_SPEC, "%s: %s = %d must be >= %d", what, field, v, lo);
    if (v > max) return mj_fail(MOEJIT_ERR_UNSUPPORTED, "%s: %s = %d exceeds the maximum %d", what, field, v, max);
    return MOEJIT_OK;
}
