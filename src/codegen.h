/* Codegen: a normalised kernel id becomes CUDA C++ with every size a compile-time constant,
 * plus the launch plan the host needs (block size, work items per block, shared memory). */
#ifndef MOEJIT_CODEGEN_H
#define MOEJIT_CODEGEN_H

#include "spec.h"

typedef struct mj_kernel_plan {
    char entry[96];        /* extern "C" entry point */
    int threads;           /* threads per block */
    int items_per_block;   /* route: tokens handled by one block per grid-stride step */
    int smem_bytes;        /* dynamic shared memory */
} mj_kernel_plan;

/* The launch plan alone (cheap: no source). */
void mj_plan(const mj_kernel_id *id, mj_kernel_plan *plan);

/* Generate the source (malloc'ed, NUL-terminated) and its plan. */
moejit_status mj_codegen(const mj_kernel_id *id, mj_kernel_plan *plan, char **src, size_t *len);

#endif
