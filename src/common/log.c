#include "common/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static atomic_int g_level = MOEJIT_LOG_WARN;

void mj_log_set_level(moejit_log_level level) { atomic_store(&g_level, (int)level); }

moejit_log_level mj_log_parse(const char *text)
{
    if (!text || !*text) return MOEJIT_LOG_WARN;
    if (!strcmp(text, "silent") || !strcmp(text, "off") || !strcmp(text, "none")) return MOEJIT_LOG_SILENT;
    if (!strcmp(text, "info")) return MOEJIT_LOG_INFO;
    if (!strcmp(text, "debug")) return MOEJIT_LOG_DEBUG;
    return MOEJIT_LOG_WARN;
}

int mj_log_enabled(moejit_log_level level) { return (int)level <= atomic_load(&g_level); }

void mj_log(moejit_log_level level, const char *fmt, ...)
{
    if (!mj_log_enabled(level)) return;
    static const char *names[] = {"", "", "warning", "info", "debug"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per message so lines from different threads do not interleave. */
    fprintf(stderr, "moejit %s: %s\n", names[level], line);
}
