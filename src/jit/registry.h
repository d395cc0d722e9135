/* The in-process kernel registry: packed spec + compute capability → loaded kernel.
 *
 * Readers never lock: an open-addressing table of atomic node pointers, published with release
 * stores and read with acquire loads. Inserts take a writer mutex; growing builds a bigger table
 * and swaps the pointer, and the old table is kept until the registry is destroyed (a reader may
 * still be probing it). A launch of a shape seen before is therefore a hash of ~70 bytes and a
 * probe or two — no source, no file, no global lock. */
#ifndef MOEJIT_REGISTRY_H
#define MOEJIT_REGISTRY_H

#include <cuda.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "jit/op.h"

typedef struct mj_lookup_key {
    mj_kernel_id id;
    int32_t cc;      /* compute capability of the device the kernel was built for, e.g. 90 */
    int32_t reserved;
} mj_lookup_key;

typedef struct mj_kernel {
    mj_lookup_key lookup;
    uint64_t hash;
    moejit_status status;         /* MOEJIT_OK: loaded; else a build error that trying again cannot change */
    char *error_text;             /* its detail */
    mj_kernel_plan plan;
    CUlibrary library;
    CUkernel kernels[MJ_MAX_ENTRIES]; /* one per plan entry */
    char key_hex[33];
    atomic_ullong devices_ready;  /* bit d: per-device attributes set on device ordinal d */
    int pdl;                      /* 1: launched with programmatic dependent launch (decided once, at
                                     registration: the context's setting, the arch, the driver) */
} mj_kernel;

typedef struct mj_table mj_table;

typedef struct mj_registry {
    _Atomic(mj_table *) table;
    pthread_mutex_t write_mu;
    size_t count;  /* nodes */
    size_t loaded; /* nodes holding a kernel (status MOEJIT_OK) */
    mj_table **retired;
    size_t n_retired;
} mj_registry;

int mj_registry_init(mj_registry *r);
/* Frees tables and nodes; `unload` is called on every node first (may be NULL). */
void mj_registry_destroy(mj_registry *r, void (*unload)(mj_kernel *, void *), void *user);

uint64_t mj_lookup_hash(const mj_lookup_key *key);

/* Lock-free lookup. NULL if absent. */
mj_kernel *mj_registry_find(mj_registry *r, const mj_lookup_key *key, uint64_t hash);

/* Insert a finished node (lookup, hash, status and the kernel set; never changed afterwards).
 * Returns the node now in the table — k, or one inserted earlier for the same key, in which case
 * the caller still owns k — or NULL when out of memory. */
mj_kernel *mj_registry_insert(mj_registry *r, mj_kernel *k);

/* Nodes holding a loaded kernel. */
size_t mj_registry_loaded(mj_registry *r);

#endif
