/* Diagnostics on stderr, filtered by level (MOEJIT_LOG / moejit_config.log_level). */
#ifndef MOEJIT_LOG_H
#define MOEJIT_LOG_H

#include "common/error.h"

/* Set the process-wide level; the last context opened wins (messages are per process anyway). */
void mj_log_set_level(moejit_log_level level);

/* Parse "silent|warn|info|debug" (NULL/"" → warn). Unknown text → warn. */
moejit_log_level mj_log_parse(const char *text);

int mj_log_enabled(moejit_log_level level);

void mj_log(moejit_log_level level, const char *fmt, ...) MJ_PRINTF(2, 3);

#define mj_warn(...) mj_log(MOEJIT_LOG_WARN, __VA_ARGS__)
#define mj_info(...) mj_log(MOEJIT_LOG_INFO, __VA_ARGS__)
#define mj_debug(...) mj_log(MOEJIT_LOG_DEBUG, __VA_ARGS__)

#endif
