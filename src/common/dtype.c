#include "common/dtype.h"

#include <string.h>

static const char *const k_dtype_names[] = {"f32", "bf16", "f16"};

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *mj_dtype_name(int d) { return d >= 0 && d < COUNT_OF(k_dtype_names) ? k_dtype_names[d] : NULL; }

int mj_dtype_bytes(int d) { return d == MOEJIT_DTYPE_F32 ? 4 : 2; }

/* Indexed by moejit_index_dtype. */
static const char *const k_index_names[] = {"int32", "int64", "int16"};
static const char *const k_index_ctypes[] = {"int", "long long", "short"};
static const int k_index_bytes[] = {4, 8, 2};

const char *mj_index_dtype_name(int d) { return d >= 0 && d < COUNT_OF(k_index_names) ? k_index_names[d] : NULL; }

int mj_index_dtype_bytes(int d) { return d >= 0 && d < COUNT_OF(k_index_bytes) ? k_index_bytes[d] : 4; }

const char *mj_index_dtype_ctype(int d) { return d >= 0 && d < COUNT_OF(k_index_ctypes) ? k_index_ctypes[d] : NULL; }

static const char *const k_index_short[] = {"i32", "i64", "i16"};

int mj_index_dtype_parse(const char *s)
{
    const int i = mj_name_index(s, k_index_short, COUNT_OF(k_index_short));
    return i >= 0 ? i : mj_name_index(s, k_index_names, COUNT_OF(k_index_names));
}

int64_t mj_index_dtype_max(int d)
{
    return d == MOEJIT_INDEX_INT64 ? INT64_MAX : d == MOEJIT_INDEX_INT16 ? INT16_MAX : INT32_MAX;
}

int mj_name_index(const char *s, const char *const *names, int n)
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
    return mj_name_index(s, k_dtype_names, COUNT_OF(k_dtype_names));
}


static const char *const k_drop_policies[] = {"probs", "position"};

const char *mj_drop_policy_name(int p) { return p >= 0 && p < COUNT_OF(k_drop_policies) ? k_drop_policies[p] : NULL; }

int mj_drop_policy_parse(const char *s) { return mj_name_index(s, k_drop_policies, COUNT_OF(k_drop_policies)); }
