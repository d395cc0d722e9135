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

/* Append to the current detail (for multi-part messages such as an NVRTC log). */
void mj_error_append(const char *fmt, ...) MJ_PRINTF(1, 2);

/* Append raw text of the given length (may contain anything but NUL). */
void mj_error_append_raw(const char *text, size_t len);

/* Forget the calling thread's detail. */
void mj_error_clear(void);

/* The calling thread's detail ("" if none). */
const char *mj_error_text(void);

#endif
