/* The op interface: what the JIT pipeline needs to know about a kernel family, and the identity
 * of one kernel module (an op and its normalised shape).
 *
 * The pipeline knows no op by name: a kernel id carries a pointer to its op's table, and each op
 * (src/ops/<op>/) reads and writes its own shape struct in the id's bytes. Only src/api/ lists
 * the ops. Adding an operation: docs/DESIGN.md §3.1. */
#ifndef MOEJIT_JIT_OP_H
#define MOEJIT_JIT_OP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/strbuf.h"
#include "moejit.h"

#define MJ_SHAPE_BYTES 128 /* the largest normalised shape (route_align's) fits */
/* route_align holds its fused kernel plus the route and align kernels of its fallback (7). */
#define MJ_MAX_ENTRIES 8
#define MJ_NAME_MAX 96

typedef struct mj_op mj_op;

/* A kernel module's identity: its op and the op's normalised shape, padding-free and zero-filled,
 * so that two specs meaning the same kernel are the same bytes — the in-process registry's key. */
typedef struct mj_kernel_id {
    const mj_op *op;
    unsigned char shape[MJ_SHAPE_BYTES];
} mj_kernel_id;

/* An id from an op and its shape struct (n <= MJ_SHAPE_BYTES bytes). */
static inline void mj_kernel_id_set(mj_kernel_id *id, const mj_op *op, const void *shape, size_t n)
{
    memset(id, 0, sizeof *id);
    id->op = op;
    memcpy(id->shape, shape, n);
}

/* For an op's normalize: on success, the id of the normalised shape. Returns st. */
static inline moejit_status mj_kernel_id_result(moejit_status st, mj_kernel_id *id, const mj_op *op, const void *shape,
                                                size_t n)
{
    if (st == MOEJIT_OK) mj_kernel_id_set(id, op, shape, n);
    return st;
}

/* `static type name(const mj_kernel_id *id)`: an op's shape struct, copied out of the id's bytes
 * (each op reads its own; copying keeps C's aliasing rules). */
#define MJ_DEFINE_SHAPE_OF(name, type)                                                                     \
    static type name(const mj_kernel_id *id)                                                              \
    {                                                                                                     \
        type s_;                                                                                          \
        memcpy(&s_, id->shape, sizeof s_);                                                                \
        return s_;                                                                                        \
    }

/* How the host launches one entry point of a module. */
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

struct mj_op {
    moejit_op op;     /* the public enum value */
    const char *name; /* "route" */
    /* Validate a public descriptor and fill *id (errors name the field and value). */
    moejit_status (*normalize)(const moejit_kernel_desc *desc, mj_kernel_id *id);
    /* Module name, stating the shape: "moejit_route_sigmoid_e384_k8_bf16". Returns the length. */
    int (*module_name)(const mj_kernel_id *id, char *buf, size_t cap);
    /* Human-readable shape: "E=384 K=8 score=sigmoid dtype=bf16". Returns the length. */
    int (*describe)(const mj_kernel_id *id, char *buf, size_t cap);
    /* Entry points and launch geometry (plan->module is already set). */
    void (*plan)(const mj_kernel_id *id, mj_kernel_plan *plan);
    /* The op's template, kernel parameter struct, Cfg and extern "C" entries (after the common
     * prelude): where a shape becomes CUDA source. */
    void (*emit)(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan);
};

#endif
