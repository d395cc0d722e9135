/* The build pipeline of one kernel module, for an explicit arch (no GPU needed):
 *   codegen → options → key → disk cache → (per-key lock, look again) → NVRTC → publish
 * Concurrent builds of one key in a context build once (jit/flight.h). The launch path loads
 * what this produces (jit/loader.h); prewarm stops here. */
#ifndef MOEJIT_JIT_BUILD_H
#define MOEJIT_JIT_BUILD_H

#include "jit/context.h"

typedef struct mj_built {
    mj_kernel_plan plan;
    char key_hex[33];
    uint8_t *cubin; /* malloc'ed */
    size_t cubin_len;
    int from_disk;  /* 1: a verified disk entry; 0: compiled now */
    int stored;     /* 1: the entry is in the disk cache (found there, or published now) */
    char *store_error; /* malloc'ed: when compiled but not stored, why (cache off or read-only, the failed write) */
    double seconds;
    /* Where the time went (seconds), for the runtime benchmark. */
    double t_codegen, t_key, t_disk, t_nvrtc, t_publish;
} mj_built;

/* Produce the cubin of `id` for `arch`, from the disk cache or NVRTC (publishing it).
 * `skip_disk` forces a compile (MOEJIT_ALWAYS_COMPILE, or a cached cubin the driver rejected).
 * Concurrent builds of one key in a context build once (the others wait and copy the result);
 * processes sharing the cache directory serialise on a per-key lock (moejit_config
 * .cache_lock_timeout_ms) and look at the disk again once they hold it. */
moejit_status mj_jit_build(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, int skip_disk, mj_built *out);
void mj_built_free(mj_built *b);

/* The key `id` has for `arch` (codegen, options, NVRTC identity; compiles nothing). The caller
 * frees *key with mj_key_free. */
struct mj_key;
moejit_status mj_jit_key(moejit_ctx *ctx, const mj_kernel_id *id, const char *arch, mj_kernel_plan *plan,
                         struct mj_key *key);

#endif
