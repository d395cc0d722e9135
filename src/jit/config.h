/* A context's configuration, resolved once at moejit_open: the moejit_config fields, then the
 * environment (MOEJIT_CACHE_DIR, MOEJIT_CACHE, …), then the defaults (docs/DESIGN.md §5). */
#ifndef MOEJIT_JIT_CONFIG_H
#define MOEJIT_JIT_CONFIG_H

#include <limits.h>
#include <stdint.h>

#include "moejit.h"

/* Default of moejit_config.cache_lock_timeout_ms / MOEJIT_CACHE_LOCK_TIMEOUT_MS: longer than any
 * one compile takes (the largest kernels take well under a second on an idle core), short
 * enough that a stuck holder costs little. */
#define MJ_DEFAULT_LOCK_TIMEOUT_MS 10000

typedef struct mj_config {
    char cache_dir[PATH_MAX];
    moejit_cache_mode cache_mode;
    const char *cache_mode_from; /* where the mode came from, for reports: "MOEJIT_CACHE=ro"… */
    int no_compile;
    int always_compile;
    char dump_dir[PATH_MAX];
    char extra_flags[2048];
    int device;
    int compile_jobs;
    uint64_t cache_max_bytes; /* 0: no limit */
    int lock_timeout_ms;      /* per-key cross-process lock; 0: no lock */
    int pdl;                  /* 1: programmatic dependent launch where the device and driver allow it */
} mj_config;

/* Resolve cfg (may be NULL) and the environment into *out. Errors name the field or variable. */
moejit_status mj_config_resolve(const moejit_config *cfg, mj_config *out);

#endif
