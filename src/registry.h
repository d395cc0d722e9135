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

#include "codegen.h"

typedef struct mj_lookup_key {
    mj_kernel_id id;
    int32_t cc;      /* compute capability of the device the kernel was built for, e.g. 90 */
    int32_t reserved;
} mj_lookup_key;

enum { MJ_KERNEL_PENDING = 0, MJ_KERNEL_READY = 1, MJ_KERNEL_FAILED = 2 };

typedef struct mj_kernel {
    mj_lookup_key lookup;
    uint64_t hash;
    atomic_int state;             /* MJ_KERNEL_* */
    mj_kernel_plan plan;
    CUlibrary library;
    CUkernel kernels[MJ_MAX_ENTRIES]; /* one per plan entry */
    char key_hex[33];
    atomic_ullong devices_ready;  /* bit d: per-device attributes set on device ordinal d */
    /* Single flight: the thread that inserted the node builds it; others wait here. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    moejit_status error_status;   /* when FAILED */
    char *error_text;
} mj_kernel;

typedef struct mj_table mj_table;

typedef struct mj_registry {
    _Atomic(mj_table *) table;
    pthread_mutex_t write_mu;
    size_t count;
    mj_table **retired;
    size_t n_retired;
} mj_registry;

int mj_registry_init(mj_registry *r);
/* Frees tables and nodes; `unload` is called on every node first (may be NULL). */
void mj_registry_destroy(mj_registry *r, void (*unload)(mj_kernel *, void *), void *user);

uint64_t mj_lookup_hash(const mj_lookup_key *key);

/* Lock-free lookup. NULL if absent. */
mj_kernel *mj_registry_find(mj_registry *r, const mj_lookup_key *key, uint64_t hash);

/* Find or insert a PENDING node. *created = 1 when this call inserted it (the caller must build
 * it and then publish READY or FAILED). NULL on allocation failure. */
mj_kernel *mj_registry_insert(mj_registry *r, const mj_lookup_key *key, uint64_t hash, int *created);

size_t mj_registry_count(mj_registry *r);

#endif
