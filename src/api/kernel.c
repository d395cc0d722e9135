/* Source generation, validation and naming through the public API (no GPU, no NVRTC). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ops.h"
#include "jit/codegen.h"
#include "common/error.h"

moejit_status moejit_validate(const moejit_kernel_desc *desc)
{
    mj_error_clear();
    mj_kernel_id id;
    return mj_kernel_id_from_desc(desc, &id);
}

moejit_status moejit_source(moejit_ctx *ctx, const moejit_kernel_desc *desc, char **src, size_t *len)
{
    mj_error_clear();
    (void)ctx; /* the source depends on the descriptor alone */
    if (!src) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_source: src is NULL");
    *src = NULL;
    mj_kernel_id id;
    moejit_status st = mj_kernel_id_from_desc(desc, &id);
    if (st != MOEJIT_OK) return st;
    mj_kernel_plan plan;
    size_t n = 0;
    st = mj_codegen(&id, &plan, src, &n);
    if (st == MOEJIT_OK && len) *len = n;
    return st;
}

moejit_status moejit_kernel_name(const moejit_kernel_desc *desc, char *buf, size_t cap)
{
    mj_error_clear();
    if (!buf || cap == 0) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_kernel_name: buffer is NULL or empty");
    mj_kernel_id id;
    moejit_status st = mj_kernel_id_from_desc(desc, &id);
    if (st != MOEJIT_OK) return st;
    int n = mj_kernel_module_name(&id, buf, cap);
    if (n < 0 || (size_t)n >= cap)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "moejit_kernel_name: the name needs %d bytes, the buffer has %zu",
                       n + 1, cap);
    return MOEJIT_OK;
}

void moejit_free(void *p) { free(p); }
