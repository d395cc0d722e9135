/* Find the libnvrtc that a compile would load, and its identity, without loading it.
 *
 * The cache key must name the exact NVRTC build (docs/DESIGN.md §1), but dlopen()ing the 100 MB library
 * costs milliseconds, far more than a whole disk-cache hit. So we resolve the file ourselves —
 * MOEJIT_NVRTC_PATH, then the dynamic loader's search order (LD_LIBRARY_PATH, /etc/ld.so.cache,
 * the default directories), then $CUDA_HOME, $CUDA_PATH and /usr/local/cuda — read its GNU build
 * id from the ELF notes and its version from the file name, and later dlopen() that same path. */
#ifndef MOEJIT_NVRTC_LOCATE_H
#define MOEJIT_NVRTC_LOCATE_H

#include <limits.h>

#include "moejit.h"

typedef struct mj_nvrtc_identity {
    char path[PATH_MAX];  /* the file to dlopen (as found, not canonicalised) */
    char version[32];     /* "13.0.88" from the real file name; "13" if only the soname is known */
    char build_id[80];    /* hex of NT_GNU_BUILD_ID; else "nobuildid-<size>-<mtime>" */
} mj_nvrtc_identity;

/* Resolve NVRTC (honouring MOEJIT_NVRTC_PATH). MOEJIT_ERR_NO_NVRTC with the places searched. */
moejit_status mj_nvrtc_locate(mj_nvrtc_identity *out);

/* Read the GNU build id of an ELF file as hex. Returns 0 on success. Exposed for tests. */
int mj_elf_build_id(const char *path, char *hex, size_t cap);

#endif
