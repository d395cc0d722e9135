/* Thread-local error detail behind moejit_last_error(). */
#ifndef MOEJIT_ERROR_H
#define MOEJIT_ERROR_H

#include "moejit.h"

#if defined(__GNUC__)
#define MJ_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MJ_PRINTF(f, a)
#endif

/* Record a formatted detail for the calling thread and return `status` (so callers can write
 * `return mj_fail(MOEJIT_ERR_INVALID_SPEC, "num_experts = %d …", e);`). */
moejit_status mj_fail(moejit_status status, const char *fmt, ...) MJ_PRINTF(2, 3);

/* A spec's count field in [lo, max]: "<what>: <field> = v must be >= lo" (MOEJIT_ERR_INVALID_SPEC)
 * below, "... exceeds the maximum max" (MOEJIT_ERR_UNSUPPORTED: a limit of this build) above. */
moejit_status mj_check_spec_count(const char *what, const char *field, int v, int lo, int max);

/* Append to the current detail (for multi-part messages such as an NVRTC log). */
void mj_error_append(const char *fmt, ...) MJ_PRINTF(1, 2);

/* Append raw text of the given length (may contain anything but NUL). */
void mj_error_append_raw(const char *text, size_t len);

/* A public struct's reserved words must be zero: a non-zero one is a field of a newer moejit.h
 * that this library does not know. MOEJIT_ERR_UNSUPPORTED naming `what` ("route spec"), the field
 * and the word, else MOEJIT_OK. `count` words of `size` bytes (4 or 8); count 1 is a scalar. */
moejit_status mj_check_reserved(const char *what, const char *field, const void *words, size_t count, size_t size);
/* The usual case: the array `reserved` of a struct pointed to by p. */
#define MJ_CHECK_RESERVED(what, p) \
    mj_check_reserved(what, "reserved", (p)->reserved, sizeof((p)->reserved) / sizeof((p)->reserved[0]), \
                      sizeof((p)->reserved[0]))

/* An argument pointer that is NULL or not aligned to `align` bytes: MOEJIT_ERR_INVALID_ARGUMENT
 * naming the op's args and the pointer ("route args: ids is NULL"); else MOEJIT_OK. */
moejit_status mj_check_pointer(const char *op, const char *name, const void *p, size_t align);

/* Forget the calling thread's detail. Every public function that returns a moejit_status calls it
 * first, so that moejit_last_error() describes the thread's most recent call ("" after a
 * success). Cheap: a thread-local load and a store. */
void mj_error_clear(void);

/* The calling thread's detail ("" if none). */
const char *mj_error_text(void);

#endif
