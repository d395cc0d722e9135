/* NVRTC, loaded with dlopen(): options, compile to CUBIN, and the failure report. */
#ifndef MOEJIT_COMPILER_H
#define MOEJIT_COMPILER_H

#include <stddef.h>

#include "jit/nvrtc_locate.h"
#include "common/strbuf.h"

#define MJ_MAX_OPTIONS 64

/* The options of one compile. `key_text` is their normalised form for the cache key: one option a
 * line, without flags that cannot change the output (-no-cache). */
typedef struct mj_compile_options {
    const char *argv[MJ_MAX_OPTIONS];
    int argc;
    char storage[4096]; /* backing store of argv strings */
    char key_text[4096];
} mj_compile_options;

/* Build the options for `arch` ("sm_90a") plus space-separated extra flags (may be NULL).
 * MOEJIT_ERR_INVALID_ARGUMENT when the flags do not fit or the arch is malformed. */
moejit_status mj_compile_options_build(const char *arch, const char *extra_flags, mj_compile_options *out);

typedef struct mj_nvrtc mj_nvrtc;

/* dlopen the located library and resolve its entry points. */
moejit_status mj_nvrtc_open(const mj_nvrtc_identity *identity, mj_nvrtc **out);
void mj_nvrtc_close(mj_nvrtc *nv);

/* "13.0" as reported by nvrtcVersion(). */
const char *mj_nvrtc_version(const mj_nvrtc *nv);

typedef struct mj_compile_output {
    void *cubin;      /* malloc'ed */
    size_t cubin_len;
    char *log;        /* malloc'ed, NUL-terminated, possibly empty */
} mj_compile_output;

/* Compile `source` to a CUBIN. On failure returns MOEJIT_ERR_COMPILE with NVRTC's error and the
 * options in the thread's error detail; out->log is still filled when NVRTC produced one (the
 * caller saves it and appends an excerpt: mj_nvrtc_append_log_excerpt). */
moejit_status mj_nvrtc_compile(mj_nvrtc *nv, const char *source, const char *program_name,
                               const mj_compile_options *options, mj_compile_output *out);

void mj_compile_output_free(mj_compile_output *out);

/* How many error lines of a failed compile's log its error detail shows. */
#define MJ_COMPILE_ERROR_LINES 5

/* Append to the thread's error detail "log:" and the first max_lines error lines of an NVRTC log
 * (its first lines when none says "error"), each cut at 200 bytes, and how many more there are. */
void mj_nvrtc_append_log_excerpt(const char *log, int max_lines);

/* Whether compiles add -minimal (default: when NVRTC supports it). For the benchmark's comparison. */
void mj_nvrtc_use_minimal(mj_nvrtc *nv, int on);

#endif
