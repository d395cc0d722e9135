/* A kernel family ("op"): everything the generic pipeline needs to know about it.
 *
 * Adding an operation means: its shape struct and a member in mj_kernel_id (spec.h), a template
 * in kernel_templates/, one file implementing this table, one line in ops.c, and its public
 * launch function. Codegen, keys, the caches, prewarm and the CLI then handle it unchanged. */
#ifndef MOEJIT_OP_H
#define MOEJIT_OP_H

#include "codegen.h"
#include "strbuf.h"

typedef struct mj_op {
    moejit_op op;
    const char *name; /* "route" */
    /* Validate desc and fill id->u with the normalised shape (id->op is already set). */
    moejit_status (*normalize)(const moejit_kernel_desc *desc, mj_kernel_id *id);
    /* Module name, stating the shape: "moejit_route_sigmoid_e384_k8_bf16". Returns the length. */
    int (*module_name)(const mj_kernel_id *id, char *buf, size_t cap);
    /* Human-readable shape: "E=384 K=8 score=sigmoid dtype=bf16". Returns the length. */
    int (*describe)(const mj_kernel_id *id, char *buf, size_t cap);
    /* Entry points and launch geometry (plan->module is already set). */
    void (*plan)(const mj_kernel_id *id, mj_kernel_plan *plan);
    /* The op's templates and its Cfg + extern "C" entries (after the common prelude). */
    void (*emit)(mj_strbuf *sb, const mj_kernel_id *id, const mj_kernel_plan *plan);
} mj_op;

/* The table entry of an op, or NULL for an unknown op. */
const mj_op *mj_op_get(int op);

#endif
