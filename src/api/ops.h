/* The list of operations, and public kernel descriptors turned into kernel ids: the one place
 * that knows every op (the JIT pipeline below knows none). */
#ifndef MOEJIT_API_OPS_H
#define MOEJIT_API_OPS_H

#include "jit/op.h"

/* The table of a moejit_op, or NULL for a value that is not one. */
const mj_op *mj_op_for(int op);

/* Validate a descriptor and build its kernel id (errors name the field and value). */
moejit_status mj_kernel_id_from_desc(const moejit_kernel_desc *desc, mj_kernel_id *out);

#endif
