/* Codegen: a normalised kernel id becomes CUDA C++ with every size a compile-time constant,
 * plus the launch plan the host needs for each of the module's entry points. */
#ifndef MOEJIT_CODEGEN_H
#define MOEJIT_CODEGEN_H

#include "spec.h"

/* route_align holds its fused kernel plus the route and align kernels of its fallback (6). */
#define MJ_MAX_ENTRIES 8
#define MJ_NAME_MAX 96

typedef struct mj_entry_plan {
    char name[MJ_NAME_MAX]; /* extern "C" entry point */
    int threads;            /* threads per block */
    int items_per_block;    /* work items one block covers per grid-stride step (op-defined) */
    int smem_bytes;         /* dynamic shared memory */
} mj_entry_plan;

typedef struct mj_kernel_plan {
    char module[MJ_NAME_MAX]; /* module name, stating the shape */
    int n_entries;
    mj_entry_plan entry[MJ_MAX_ENTRIES];
} mj_kernel_plan;

/* Set entry i of a plan (and n_entries to at least i+1). Its name is the module name followed by
 * `suffix`, the module part shortened to fit MJ_NAME_MAX: names stay distinct as long as no
 * suffix of a module is the end of another. */
void mj_plan_entry(mj_kernel_plan *plan, int i, const char *suffix, int threads, int items_per_block, int smem_bytes);

/* The launch plan alone (cheap: no source). */
void mj_plan(const mj_kernel_id *id, mj_kernel_plan *plan);

/* Generate the source (malloc'ed, NUL-terminated) and its plan. */
moejit_status mj_codegen(const mj_kernel_id *id, mj_kernel_plan *plan, char **src, size_t *len);

/* Emit a Cfg float as an exact hex literal ("0x1.4p+1f"). */
void mj_float_literal(char *buf, size_t cap, float v);

/* The C++ type that reads a moejit_dtype ("mj::BF16"). */
const char *mj_dtype_struct(int dtype);

#endif
