/* What the pipeline writes beside the cache: MOEJIT_DUMP_DIR (source, log, cubin and options of
 * every compile) and the files of a failed compile, whose paths the error detail names. */
#ifndef MOEJIT_JIT_ARTIFACTS_H
#define MOEJIT_JIT_ARTIFACTS_H

#include "jit/context.h"

/* MOEJIT_DUMP_DIR: <dir>/<entry>-<key>.{cu,log,cubin,options}. Best effort, never fatal.
 * Returns 1 when the source and the log were written. */
int mj_dump_compile(const moejit_ctx *ctx, const char *entry, const char *key_hex, const char *source,
                    const mj_compile_options *options, const mj_compile_output *out);

/* After a failed compile: the source and the full NVRTC log go to files — MOEJIT_DUMP_DIR when
 * set (`dumped`: already written), else <cache>/failed/ when the cache is writable, else
 * ${TMPDIR:-/tmp}/moejit-<uid>/failed/ — and the thread's error detail gets the key, their paths
 * and the log's first error lines. */
void mj_report_failed_compile(const moejit_ctx *ctx, const char *entry, const char *key_hex, const char *source,
                              const char *log, int dumped);

#endif
