/* Descriptor dispatch and the names of the shared enums. */
#include "spec.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codegen.h"
#include "error.h"
#include "hash.h"
#include "op.h"

static const char *const k_dtype_names[] = {"f32", "bf16", "f16"};
static const char *const k_score_names[] = {"softmax", "sigmoid", "sqrt_softplus"};
static const char *const k_group_score_names[] = {"max", "top2_sum"};

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *mj_dtype_name(int d) { return d >= 0 && d < COUNT_OF(k_dtype_names) ? k_dtype_names[d] : NULL; }
const char *mj_score_name(int s) { return s >= 0 && s < COUNT_OF(k_score_names) ? k_score_names[s] : NULL; }
const char *mj_group_score_name(int g)
{
    return g >= 0 && g < COUNT_OF(k_group_score_names) ? k_group_score_names[g] : NULL;
}
int mj_dtype_bytes(int d) { return d == MOEJIT_DTYPE_F32 ? 4 : 2; }

static int parse_name(const char *s, const char *const *names, int n)
{
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

int mj_dtype_parse(const char *s)
{
    if (s && (!strcmp(s, "float32") || !strcmp(s, "fp32"))) return MOEJIT_DTYPE_F32;
    if (s && !strcmp(s, "bfloat16")) return MOEJIT_DTYPE_BF16;
    if (s && (!strcmp(s, "float16") || !strcmp(s, "fp16") || !strcmp(s, "half"))) return MOEJIT_DTYPE_F16;
    return parse_name(s, k_dtype_names, COUNT_OF(k_dtype_names));
}
int mj_score_parse(const char *s) { return parse_name(s, k_score_names, COUNT_OF(k_score_names)); }
int mj_group_score_parse(const char *s) { return parse_name(s, k_group_score_names, COUNT_OF(k_group_score_names)); }

void mj_appendf(char *buf, size_t cap, int *len, const char *fmt, ...)
{
    const size_t at = (size_t)*len < cap ? (size_t)*len : cap;
    va_list ap;
    va_start(ap, fmt);
    const int n = vsnprintf(buf + at, cap - at, fmt, ap);
    va_end(ap);
    if (n > 0) *len += n;
}

moejit_status mj_kernel_id_from_desc(const moejit_kernel_desc *desc, mj_kernel_id *out)
{
    if (!desc) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "kernel descriptor is NULL");
    memset(out, 0, sizeof *out);
    const mj_op *op = mj_op_get((int)desc->op);
    if (!op) return mj_fail(MOEJIT_ERR_INVALID_SPEC, "kernel descriptor: op = %d is not a moejit_op", (int)desc->op);
    moejit_status st = mj_check_reserved("kernel descriptor", "reserved", &desc->reserved, 1, sizeof desc->reserved);
    if (st != MOEJIT_OK) return st;
    out->op = (int32_t)desc->op;
    return op->normalize(desc, out);
}

int mj_kernel_module_name(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_op *op = mj_op_get(id->op);
    char full[1024];
    int n = op ? op->module_name(id, full, sizeof full) : snprintf(full, sizeof full, "moejit_unknown");
    if (n >= MJ_NAME_MAX) {
        /* A name states the shape, but must fit MJ_NAME_MAX (the plan, the prewarm result): a
         * longer one (say, a grouped sqrt_softplus route with two float parameters) keeps its
         * beginning and ends in a hash of the whole, so it stays unique and is the same name
         * everywhere — entry point, moejit_kernel_name, cache metadata. */
        const uint64_t h = XXH3_64bits(full, strlen(full));
        snprintf(full + MJ_NAME_MAX - 18, 18, "_%016llx", (unsigned long long)h);
        n = MJ_NAME_MAX - 1;
    }
    snprintf(buf, cap, "%s", full);
    return n;
}

int mj_kernel_describe(const mj_kernel_id *id, char *buf, size_t cap)
{
    const mj_op *op = mj_op_get(id->op);
    return op ? op->describe(id, buf, cap) : snprintf(buf, cap, "?");
}

const char *mj_op_name(int op)
{
    const mj_op *o = mj_op_get(op);
    return o ? o->name : "unknown";
}
