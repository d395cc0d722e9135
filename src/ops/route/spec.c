/* route's spec and arguments: validation and normalisation, the names of its enums and shapes,
 * and the argument checks the launch and the reference share. */
#include "ops/route/route.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/dtype.h"
#include "common/error.h"
#include "common/strbuf.h"

static const char *const k_score_names[] = {"softmax", "sigmoid", "sqrt_softplus"};
static const char *const k_group_score_names[] = {"max", "top2_sum"};
#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *mj_score_name(int s) { return s >= 0 && s < COUNT_OF(k_score_names) ? k_score_names[s] : NULL; }
const char *mj_group_score_name(int g)
{
    return g >= 0 && g < COUNT_OF(k_group_score_names) ? k_group_score_names[g] : NULL;
}
int mj_score_parse(const char *s) { return mj_name_index(s, k_score_names, COUNT_OF(k_score_names)); }
int mj_group_score_parse(const char *s) { return mj_name_index(s, k_group_score_names, COUNT_OF(k_group_score_names)); }

#define SPEC_ERR(status, ...) mj_fail(status, "route spec: " __VA_ARGS__)

static const char *const k_replay_names[] = {"off", "record", "given"};
static const char *const k_load_names[] = {"none", "int32", "int64"};
const char *mj_replay_name(int m) { return m >= 0 && m < COUNT_OF(k_replay_names) ? k_replay_names[m] : NULL; }
const char *mj_load_counter_name(int m) { return m >= 0 && m < COUNT_OF(k_load_names) ? k_load_names[m] : NULL; }
int mj_replay_parse(const char *s) { return mj_name_index(s, k_replay_names, COUNT_OF(k_replay_names)); }
int mj_load_counter_parse(const char *s) { return mj_name_index(s, k_load_names, COUNT_OF(k_load_names)); }

/* Step 13: the auxiliary-loss statistics. */
static moejit_status normalize_aux(const moejit_route_spec *spec, mj_route_shape *out)
{
    const uint32_t all = MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE | MOEJIT_AUX_Z_LOSS;
    const uint32_t f = spec->aux_stats;
    if (f & ~all)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "aux_stats = 0x%x has bits other than MOEJIT_AUX_* (0x%x)", f, all);
    if (!mj_index_dtype_name((int)spec->seq_offset_dtype) || spec->seq_offset_dtype == MOEJIT_INDEX_INT16)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "seq_offset_dtype = %d must be 0 (int32) or 1 (int64)",
                        (int)spec->seq_offset_dtype);
    if (f && spec->padded)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED,
                        "aux_stats = 0x%x with padded = 1: statistics of padded batches are not supported (T would "
                        "be a device count)", f);
    if (f && spec->replay == MOEJIT_REPLAY_GIVEN)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "aux_stats = 0x%x with replay = given is not supported", f);
    out->aux_stats = (int32_t)f;
    out->seq_offset_dtype = (f & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? (int32_t)spec->seq_offset_dtype : 0;
    return MOEJIT_OK;
}

static const char *const k_aux_names[] = {"lb", "seq", "z"};

int mj_aux_stats_format(uint32_t flags, char *buf, size_t cap)
{
    int n = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < COUNT_OF(k_aux_names); i++)
        if (flags & (1u << i)) mj_appendf(buf, cap, &n, "%s%s", n ? "," : "", k_aux_names[i]);
    return n;
}

int mj_aux_stats_parse(const char *s)
{
    if (!s) return -1;
    int flags = 0;
    char tok[16];
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 0 || n >= sizeof tok) return -1;
        memcpy(tok, s, n);
        tok[n] = '\0';
        const int i = mj_name_index(tok, k_aux_names, COUNT_OF(k_aux_names));
        if (i < 0) return -1;
        flags |= 1 << i;
        s += n;
        if (*s == ',') s++;
    }
    return flags;
}

moejit_status mj_aux_check(const char *op, const moejit_aux_stats *aux, uint32_t flags, int needs, int offset_dtype,
                           int experts)
{
    char names[32];
    mj_aux_stats_format(flags, names, sizeof names);
    if (!aux) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: aux is NULL (spec aux_stats = %s)", op, names);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("aux stats", aux)) != MOEJIT_OK) return st;
    const int seq = (flags & MOEJIT_AUX_SEQ_LOAD_BALANCE) != 0;
    if (seq && (aux->num_seqs < 1 || aux->num_seqs > INT32_MAX / (experts > 0 ? experts : 1)))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: aux->num_seqs = %lld must be 1..%d (aux_stats = %s)", op,
                       (long long)aux->num_seqs, INT32_MAX / (experts > 0 ? experts : 1), names);
    if ((needs & 1) && (flags & (MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE)) &&
        (st = mj_check_pointer(op, "aux->prob_sums (aux_stats lb/seq)", aux->prob_sums, 8)) != MOEJIT_OK)
        return st;
    if ((needs & 2) && (flags & (MOEJIT_AUX_LOAD_BALANCE | MOEJIT_AUX_SEQ_LOAD_BALANCE)) &&
        (st = mj_check_pointer(op, "aux->counts (aux_stats lb/seq)", aux->counts, 4)) != MOEJIT_OK)
        return st;
    if ((needs & 4) && (flags & MOEJIT_AUX_Z_LOSS) &&
        (st = mj_check_pointer(op, "aux->lse (aux_stats z)", aux->lse, 4)) != MOEJIT_OK)
        return st;
    if ((needs & 8) && seq &&
        (st = mj_check_pointer(op, "aux->seq_offsets (aux_stats seq)", aux->seq_offsets,
                               (size_t)mj_index_dtype_bytes(offset_dtype))) != MOEJIT_OK)
        return st;
    return MOEJIT_OK;
}

/* The serving options (steps 8-12) of a spec whose E and S are valid. */
static moejit_status normalize_serving(const moejit_route_spec *spec, int shared_slots, mj_route_shape *out)
{
    const int e = spec->num_experts;
    if (!mj_index_dtype_name((int)spec->id_dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "id_dtype = %d is not a moejit_index_dtype (0 int32, 1 int64, 2 int16)",
                        (int)spec->id_dtype);
    const int replicas = spec->max_replicas, physical = spec->num_physical_experts;
    if (replicas < 0 || replicas > MJ_ROUTE_MAX_REPLICAS)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "max_replicas = %d must be 0 (no placement) or 1..%d", replicas,
                        MJ_ROUTE_MAX_REPLICAS);
    if (replicas > 0 && (physical < 1 || physical > MJ_ROUTE_MAX_PHYSICAL_EXPERTS))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "num_physical_experts = %d must be 1..%d with placement (max_replicas = %d)", physical,
                        MJ_ROUTE_MAX_PHYSICAL_EXPERTS, replicas);
    if (replicas == 0 && physical != 0 && physical != e)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "num_physical_experts = %d without placement (max_replicas = 0) must be 0 or num_experts = %d",
                        physical, e);
    out->max_replicas = replicas;
    out->physical_experts = replicas > 0 ? physical : e;
    /* the largest id written is P + S - 1 (a shared slot) */
    const int64_t top_id = (int64_t)out->physical_experts + shared_slots - 1;
    if (top_id > mj_index_dtype_max((int)spec->id_dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "id_dtype = %s cannot hold id %lld (%d experts + %d shared slots)",
                        mj_index_dtype_name((int)spec->id_dtype), (long long)top_id, out->physical_experts,
                        shared_slots);
    out->id_dtype = (int32_t)spec->id_dtype;
    if (!mj_load_counter_name((int)spec->load_counter))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "load_counter = %d is not a moejit_load_counter (0 none, 1 int32, 2 int64)",
                        (int)spec->load_counter);
    out->load_counter = (int32_t)spec->load_counter;
    if (!mj_replay_name((int)spec->replay))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "replay = %d is not a moejit_replay (0 off, 1 record, 2 given)",
                        (int)spec->replay);
    out->replay = (int32_t)spec->replay;
    if (!mj_index_dtype_name((int)spec->logical_id_dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "logical_id_dtype = %d is not a moejit_index_dtype (0 int32, 1 int64, 2 int16)",
                        (int)spec->logical_id_dtype);
    if (spec->replay != MOEJIT_REPLAY_OFF && (int64_t)e + shared_slots - 1 > mj_index_dtype_max((int)spec->logical_id_dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "logical_id_dtype = %s cannot hold id %d (%d experts + %d shared slots)",
                        mj_index_dtype_name((int)spec->logical_id_dtype), e + shared_slots - 1, e, shared_slots);
    out->logical_id_dtype = spec->replay != MOEJIT_REPLAY_OFF ? (int32_t)spec->logical_id_dtype : 0;
    out->padded = spec->padded != 0;
    return normalize_aux(spec, out);
}

moejit_status mj_route_check_sizes(const char *what, int e, int k)
{
    moejit_status st;
    if ((st = mj_check_spec_count(what, "num_experts", e, 1, MOEJIT_MAX_EXPERTS)) != MOEJIT_OK) return st;
    if (k < 1) return mj_check_spec_count(what, "topk", k, 1, MOEJIT_MAX_TOPK);
    if (k > e) return mj_fail(MOEJIT_ERR_INVALID_SPEC, "%s: topk = %d exceeds num_experts = %d", what, k, e);
    return mj_check_spec_count(what, "topk", k, 1, MOEJIT_MAX_TOPK);
}

moejit_status mj_route_normalize(const moejit_route_spec *spec, mj_route_shape *out)
{
    if (!spec) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route spec: spec is NULL");
    if (!out) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "route spec: output is NULL");
    memset(out, 0, sizeof *out);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("route spec", spec)) != MOEJIT_OK) return st;

    const int e = spec->num_experts, k = spec->topk;
    if ((st = mj_route_check_sizes("route spec", e, k)) != MOEJIT_OK) return st;
    if (!mj_score_name((int)spec->score))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "score = %d is not a moejit_score (0 softmax, 1 sigmoid, 2 sqrt_softplus)",
                        (int)spec->score);
    if (!mj_dtype_name((int)spec->dtype))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "dtype = %d is not a moejit_dtype (0 f32, 1 bf16, 2 f16)",
                        (int)spec->dtype);

    int g = spec->num_groups;
    if (g < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d must be >= 0", g);
    if (g == 0) g = 1;
    if (g > e) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d exceeds num_experts = %d", g, e);
    if (e % g) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "num_groups = %d does not divide num_experts = %d", g, e);
    int tg = spec->topk_groups;
    if (tg < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk_groups = %d must be >= 0", tg);
    if (tg == 0) tg = g;
    if (tg > g) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "topk_groups = %d exceeds num_groups = %d", tg, g);
    if ((int64_t)k > (int64_t)tg * (e / g))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "topk = %d exceeds the %d experts of the topk_groups = %d kept groups (%d experts each)", k,
                        tg * (e / g), tg, e / g);
    if (g > 1 && !mj_group_score_name((int)spec->group_score))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "group_score = %d is not a moejit_group_score (0 max, 1 top2_sum)",
                        (int)spec->group_score);
    if (g > 1 && spec->group_score == MOEJIT_GROUP_SCORE_TOP2_SUM && e / g < 2)
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "group_score = top2_sum needs >= 2 experts per group, got %d", e / g);

    /* Subnormal values are rejected: nobody means them, and dividing by one overflows. */
    const float cap = spec->softcap;
    if (!(cap >= 0.0f) || isinf(cap) || (cap > 0.0f && cap < FLT_MIN))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "softcap = %g must be 0 (off) or a finite positive normal float",
                        (double)cap);
    float factor = spec->routed_scaling_factor;
    if (factor == 0.0f) factor = 1.0f;
    if (!(factor >= FLT_MIN) || isinf(factor))
        return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC,
                        "routed_scaling_factor = %g must be a finite positive normal float (0 means 1.0)",
                        (double)spec->routed_scaling_factor);
    const int s = spec->shared_slots;
    if (s < 0) return SPEC_ERR(MOEJIT_ERR_INVALID_SPEC, "shared_slots = %d must be >= 0", s);
    if (s > MOEJIT_MAX_TOPK)
        return SPEC_ERR(MOEJIT_ERR_UNSUPPORTED, "shared_slots = %d exceeds the maximum %d", s, MOEJIT_MAX_TOPK);

    if ((st = normalize_serving(spec, s, out)) != MOEJIT_OK) return st;
    out->experts = e;
    out->topk = k;
    out->score = (int32_t)spec->score;
    out->dtype = (int32_t)spec->dtype;
    /* Keeping all groups selects nothing: one kernel with the ungrouped shape. */
    const int grouped = g > 1 && tg < g;
    out->groups = grouped ? g : 1;
    out->topk_groups = grouped ? tg : 1;
    out->group_score = grouped ? (int32_t)spec->group_score : 0;
    out->has_bias = spec->has_bias != 0;
    out->softcap = cap;
    out->score_after_topk = spec->score_after_topk != 0;
    out->renormalize = spec->renormalize != 0;
    /* Scaling by exactly 1 is the identity: one kernel, not two. */
    out->scale_output = spec->scale_output != 0 && factor != 1.0f;
    out->scaling_factor = (out->scale_output || s > 0) ? factor : 1.0f;
    out->shared_slots = s;
    return MOEJIT_OK;
}


/* "2.5" → "2p5" so that numbers can appear in C identifiers. */
static void number_token(float v, char *buf, size_t cap)
{
    snprintf(buf, cap, "%g", (double)v);
    for (char *p = buf; *p; p++) {
        if (*p == '.') *p = 'p';
        else if (*p == '-') *p = 'm';
        else if (*p == '+') *p = 'x';
    }
}

int mj_route_module_name(const mj_route_shape *r, char *buf, size_t cap)
{
    char tmp[32];
    int n = 0;
    mj_appendf(buf, cap, &n, "moejit_route_%s_e%d_k%d", mj_score_name(r->score), r->experts, r->topk);
    if (r->groups > 1) {
        mj_appendf(buf, cap, &n, "_g%d_tg%d", r->groups, r->topk_groups);
        if (r->group_score == MOEJIT_GROUP_SCORE_TOP2_SUM) mj_appendf(buf, cap, &n, "_top2sum");
    }
    if (r->has_bias) mj_appendf(buf, cap, &n, "_bias");
    if (r->softcap > 0.0f) {
        number_token(r->softcap, tmp, sizeof tmp);
        mj_appendf(buf, cap, &n, "_cap%s", tmp);
    }
    if (r->score_after_topk) mj_appendf(buf, cap, &n, "_after");
    if (r->renormalize) mj_appendf(buf, cap, &n, "_renorm");
    if (r->scale_output || r->shared_slots) {
        number_token(r->scaling_factor, tmp, sizeof tmp);
        /* "u": the factor only feeds the shared slots, the routed weights stay unscaled */
        mj_appendf(buf, cap, &n, "_x%s%s", tmp, r->scale_output ? "" : "u");
    }
    if (r->shared_slots) mj_appendf(buf, cap, &n, "_s%d", r->shared_slots);
    if (r->padded) mj_appendf(buf, cap, &n, "_pad");
    if (r->max_replicas) mj_appendf(buf, cap, &n, "_r%dp%d", r->max_replicas, r->physical_experts);
    if (r->load_counter) mj_appendf(buf, cap, &n, "_load%s", r->load_counter == MOEJIT_LOAD_INT64 ? "64" : "32");
    if (r->replay)
        mj_appendf(buf, cap, &n, "_%s%s", r->replay == MOEJIT_REPLAY_GIVEN ? "given" : "rec",
                   r->logical_id_dtype ? mj_index_dtype_name(r->logical_id_dtype) + 3 : "");
    if (r->id_dtype) mj_appendf(buf, cap, &n, "_ids%s", mj_index_dtype_name(r->id_dtype) + 3);
    if (r->aux_stats)
        mj_appendf(buf, cap, &n, "_aux%s%s%s%s", (r->aux_stats & MOEJIT_AUX_LOAD_BALANCE) ? "lb" : "",
                   (r->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? "seq" : "", (r->aux_stats & MOEJIT_AUX_Z_LOSS) ? "z" : "",
                   r->seq_offset_dtype == MOEJIT_INDEX_INT64 ? "64" : "");
    mj_appendf(buf, cap, &n, "_%s", mj_dtype_name(r->dtype));
    return n;
}

int mj_route_describe(const mj_route_shape *r, char *buf, size_t cap)
{
    int n = 0;
    mj_appendf(buf, cap, &n, "E=%d K=%d score=%s dtype=%s", r->experts, r->topk, mj_score_name(r->score),
               mj_dtype_name(r->dtype));
    if (r->groups > 1)
        mj_appendf(buf, cap, &n, " G=%d TG=%d group_score=%s", r->groups, r->topk_groups,
                   mj_group_score_name(r->group_score));
    if (r->has_bias) mj_appendf(buf, cap, &n, " bias");
    if (r->softcap > 0.0f) mj_appendf(buf, cap, &n, " softcap=%g", (double)r->softcap);
    if (r->score_after_topk) mj_appendf(buf, cap, &n, " score_after_topk");
    if (r->renormalize) mj_appendf(buf, cap, &n, " renormalize");
    if (r->scale_output) mj_appendf(buf, cap, &n, " scale=%g", (double)r->scaling_factor);
    if (r->shared_slots) mj_appendf(buf, cap, &n, " shared_slots=%d factor=%g", r->shared_slots, (double)r->scaling_factor);
    if (r->padded) mj_appendf(buf, cap, &n, " padded");
    if (r->max_replicas) mj_appendf(buf, cap, &n, " replicas=%d physical=%d", r->max_replicas, r->physical_experts);
    if (r->load_counter) mj_appendf(buf, cap, &n, " load=%s", mj_load_counter_name(r->load_counter));
    if (r->replay)
        mj_appendf(buf, cap, &n, " replay=%s logical_ids=%s", mj_replay_name(r->replay),
                   mj_index_dtype_name(r->logical_id_dtype));
    if (r->id_dtype) mj_appendf(buf, cap, &n, " ids=%s", mj_index_dtype_name(r->id_dtype));
    if (r->aux_stats) {
        char names[32];
        mj_aux_stats_format((uint32_t)r->aux_stats, names, sizeof names);
        mj_appendf(buf, cap, &n, " aux=%s", names);
        if (r->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE)
            mj_appendf(buf, cap, &n, " seq_offsets=%s", mj_index_dtype_name(r->seq_offset_dtype));
    }
    return n;
}

moejit_status mj_route_check_args(const char *op, const mj_route_shape *r, const moejit_route_args *a,
                                  mj_route_params *p)
{
    if (!a) return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: args is NULL", op);
    moejit_status st;
    if ((st = MJ_CHECK_RESERVED("route args", a)) != MOEJIT_OK) return st;
    if (a->num_tokens < 0)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld must be >= 0", op,
                       (long long)a->num_tokens);
    const int64_t stride = a->row_stride ? a->row_stride : r->experts;
    if (stride < r->experts)
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: row_stride = %lld is smaller than num_experts = %d", op,
                       (long long)a->row_stride, r->experts);
    const int elem = mj_dtype_bytes(r->dtype);
    int64_t bytes; /* a checked multiply: no division on the launch path */
    if (__builtin_mul_overflow(a->num_tokens, stride * elem, &bytes))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld with row_stride = %lld overflows", op,
                       (long long)a->num_tokens, (long long)stride);
    const int64_t out_slots = r->topk + r->shared_slots;
    if (__builtin_mul_overflow(a->num_tokens, out_slots * 8, &bytes))
        return mj_fail(MOEJIT_ERR_INVALID_ARGUMENT, "%s args: num_tokens = %lld overflows the outputs", op,
                       (long long)a->num_tokens);
    *p = (mj_route_params){
        .logits = a->logits,
        .bias = r->has_bias ? a->bias : NULL,
        .ids = a->ids,
        .weights = a->weights,
        .num_tokens = a->num_tokens,
        .row_stride = stride,
        .num_valid = r->padded ? a->num_valid : NULL,
        .logical_to_physical = r->max_replicas ? a->logical_to_physical : NULL,
        .replica_count = r->max_replicas ? a->replica_count : NULL,
        .expert_load = r->load_counter ? a->expert_load : NULL,
        .logical_ids = r->replay ? a->logical_ids : NULL,
    };
    if (a->num_tokens == 0) return MOEJIT_OK; /* empty batch: pointers may be NULL, nothing runs */
    /* In GIVEN replay the logits are still read: the weights are computed from them. */
    if ((st = mj_check_pointer(op, "logits", a->logits, (size_t)elem)) != MOEJIT_OK) return st;
    if ((st = mj_check_pointer(op, "ids", a->ids, (size_t)mj_index_dtype_bytes(r->id_dtype))) != MOEJIT_OK) return st;
    if ((st = mj_check_pointer(op, "weights", a->weights, 4)) != MOEJIT_OK) return st;
    if (r->has_bias && (st = mj_check_pointer(op, "bias (spec.has_bias = 1)", a->bias, 4)) != MOEJIT_OK)
        return st;
    if (r->padded && (st = mj_check_pointer(op, "num_valid (spec.padded = 1)", a->num_valid, 4)) != MOEJIT_OK)
        return st;
    if (r->max_replicas &&
        ((st = mj_check_pointer(op, "logical_to_physical (spec.max_replicas > 0)", a->logical_to_physical, 4)) !=
             MOEJIT_OK ||
         (st = mj_check_pointer(op, "replica_count (spec.max_replicas > 0)", a->replica_count, 4)) != MOEJIT_OK))
        return st;
    if (r->load_counter &&
        (st = mj_check_pointer(op, "expert_load (spec.load_counter)", a->expert_load,
                               r->load_counter == MOEJIT_LOAD_INT64 ? 8 : 4)) != MOEJIT_OK)
        return st;
    if (r->replay && (st = mj_check_pointer(op, "logical_ids (spec.replay)", a->logical_ids,
                                            (size_t)mj_index_dtype_bytes(r->logical_id_dtype))) != MOEJIT_OK)
        return st;
    if (r->aux_stats) {
        if ((st = mj_aux_check(op, a->aux, (uint32_t)r->aux_stats, 15, r->seq_offset_dtype, r->experts)) != MOEJIT_OK)
            return st;
        p->aux_prob_sums = a->aux->prob_sums;
        p->aux_counts = a->aux->counts;
        p->aux_lse = a->aux->lse;
        p->seq_offsets = (r->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? a->aux->seq_offsets : NULL;
        p->num_seqs = (r->aux_stats & MOEJIT_AUX_SEQ_LOAD_BALANCE) ? a->aux->num_seqs : 1;
    }
    return MOEJIT_OK;
}
