/* The element types of logits and hidden rows (moejit_dtype) and of id arrays
 * (moejit_index_dtype): names, sizes, parsing. */
#ifndef MOEJIT_COMMON_DTYPE_H
#define MOEJIT_COMMON_DTYPE_H

#include <stdint.h>

#include "moejit.h"

const char *mj_dtype_name(int dtype); /* "f32", "bf16", "f16", or NULL */
int mj_dtype_bytes(int dtype);        /* 4 or 2 */
/* "f32"/"float32"/"fp32", "bf16"/"bfloat16", "f16"/"float16"/"fp16"/"half"; -1 if unknown. */
int mj_dtype_parse(const char *s);

/* Id arrays (moejit_index_dtype). */
const char *mj_index_dtype_name(int dtype);  /* "int32", "int64", "int16", or NULL */
int mj_index_dtype_bytes(int dtype);         /* 4, 8 or 2 */
const char *mj_index_dtype_ctype(int dtype); /* the CUDA C type: "int", "long long", "short" */
/* "int32", "int64", "int16" (or "i32", "i64", "i16"); -1 if unknown. */
int mj_index_dtype_parse(const char *s);
/* Largest id the type holds (for the checks that ids fit). */
int64_t mj_index_dtype_max(int dtype);

/* Capacity's drop policies (moejit_drop_policy): "probs", "position"; NULL / -1 if unknown. */
const char *mj_drop_policy_name(int policy);
int mj_drop_policy_parse(const char *s);

/* The index of s in names[0..n), or -1 (shared by the enum name parsers). */
int mj_name_index(const char *s, const char *const *names, int n);

#endif
