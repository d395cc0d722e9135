/* Source assembly: a kernel id becomes self-contained CUDA C++ (the common prelude, then what its
 * op emits: template, parameter structs, Cfg, entry points) plus the launch plan of each entry.
 * Also the helpers ops use to emit: names of entries, exact float literals, dtype readers, and
 * kernel parameter structs from their one table (docs/DESIGN.md §3.3). */
#ifndef MOEJIT_JIT_CODEGEN_H
#define MOEJIT_JIT_CODEGEN_H

#include <stddef.h>

#include "common/params.h"
#include "jit/op.h"

/* Module name of an id, shortened to fit MJ_NAME_MAX (a longer one keeps its start and ends in a
 * hash of the whole, so it stays unique and is the same everywhere). Returns the length. */
int mj_kernel_module_name(const mj_kernel_id *id, char *buf, size_t cap);

/* Human-readable shape ("E=384 K=8 score=sigmoid dtype=bf16 bias renorm"). Returns the length. */
int mj_kernel_describe(const mj_kernel_id *id, char *buf, size_t cap);

/* The launch plan alone (cheap: no source). */
void mj_plan(const mj_kernel_id *id, mj_kernel_plan *plan);

/* Set entry i of a plan (and n_entries to at least i+1). Its name is the module name followed by
 * `suffix`, the module part shortened to fit MJ_NAME_MAX: names stay distinct as long as no
 * suffix of a module is the end of another. */
void mj_plan_entry(mj_kernel_plan *plan, int i, const char *suffix, int threads, int items_per_block, int smem_bytes);

/* The first statement of every extern "C" entry point an op emits, before anything touches
 * memory: wait for the kernel before it on the stream and let the next one be scheduled
 * (programmatic dependent launch; mj::pdl_begin in kernel_templates/common.cuh, a no-op when the
 * launch did not ask for it and below sm_90). tests/test_contracts.c checks every entry has it. */
#define MJ_ENTRY_PROLOGUE "    mj::pdl_begin();\n"

/* Generate the source (malloc'ed, NUL-terminated) and its plan. */
moejit_status mj_codegen(const mj_kernel_id *id, mj_kernel_plan *plan, char **src, size_t *len);

/* Emit a Cfg float as an exact hex literal ("0x1.4p+1f"). */
void mj_float_literal(char *buf, size_t cap, float v);

/* The C++ type that reads a moejit_dtype ("mj::BF16"). */
const char *mj_dtype_struct(int dtype);

/* ---- kernel parameter structs: one table, two languages ------------------------------------
 * An op declares its parameters once, as a table X(S, type, name) of C types (int32_t, int64_t,
 * pointers, or an earlier parameter struct):
 *     #define MJ_ROUTE_PARAMS(X, S) X(S, const void *, logits) X(S, int64_t, num_tokens) …
 *     typedef struct mj_route_params { MJ_ROUTE_PARAMS(MJ_PARAM_DECL, _) } mj_route_params;
 * and codegen emits the same struct into the source (inside namespace mj, where the prelude
 * defines int32_t and int64_t), then static_asserts of its size and of every offset as the host
 * compiler laid them out: a host/device mismatch stops the compile. */
typedef struct mj_param_field {
    const char *type, *name;
    size_t offset;
} mj_param_field;

typedef struct mj_param_layout {
    const char *c_name;    /* "mj_route_params": the struct's name on both sides */
    const char *cuda_name; /* "RouteParams": the alias the template uses */
    size_t size;
    const mj_param_field *fields;
    size_t n_fields;
} mj_param_layout;

#define MJ_PARAM_DESC(S, type, name) {#type, #name, offsetof(S, name)},
/* The layout of parameter struct S (a typedef) from its table. */
#define MJ_PARAM_LAYOUT(S, cuda_name, TABLE)                                                                  \
    {#S, cuda_name, sizeof(S), (const mj_param_field[]){TABLE(MJ_PARAM_DESC, S)},                               \
     sizeof((const mj_param_field[]){TABLE(MJ_PARAM_DESC, S)}) / sizeof(mj_param_field)}

/* `namespace mj { struct S {…}; typedef S Cuda; static_assert(…); }` for a layout. */
void mj_emit_params(mj_strbuf *sb, const mj_param_layout *layout);

/* `namespace mj { enum { Name = value, … }; }`: C enum values a template compares with. */
typedef struct mj_enum_value {
    const char *name;
    int value;
} mj_enum_value;
void mj_emit_enum(mj_strbuf *sb, const mj_enum_value *values, size_t n);

#endif
