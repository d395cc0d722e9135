/* Helpers shared by the subcommands: error lines, number and list parsing, the spec flags. */
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* ---- error lines ------------------------------------------------------------------------------ */

const char *cli_command;

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cli_command) fprintf(stderr, "moejit %s: ", cli_command);
    else fputs("moejit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_usage_hint(void)
{
    if (cli_command) fprintf(stderr, "try 'moejit %s --help'\n", cli_command);
    else fputs("try 'moejit --help'\n", stderr);
    return CLI_USAGE;
}

void cli_report(const char *what, moejit_status st)
{
    if (what) cli_error("%s: %s: %s", what, moejit_status_str(st), moejit_last_error(NULL));
    else cli_error("%s: %s", moejit_status_str(st), moejit_last_error(NULL));
}

/* ---- numbers and lists ------------------------------------------------------------------------- */

int cli_nonempty(const char *flag, const char *value)
{
    if (*value) return 0;
    cli_error("%s: the value is empty", flag); /* "" would silently mean "not given" */
    return -1;
}

int cli_parse_int(const char *flag, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    const long v = strtol(text, &end, 10);
    if (errno || end == text || *end || isspace((unsigned char)text[0]) || v < min || v > max) {
        cli_error("%s: \"%s\" is not an integer in %ld..%ld", flag, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

const char *cli_float_problem(double v, int zero_ok)
{
    if (!isfinite(v)) return "it is not finite";
    if (v == 0 && zero_ok) return NULL;
    if (v <= 0) return "it is not positive";
    if (v > FLT_MAX) return "it overflows a float (above 3.4e38)";
    if ((float)v == 0.0f) return "it rounds to 0 as a float";
    if ((float)v < FLT_MIN) return "it is subnormal as a float (below 1.2e-38)";
    return NULL;
}

/* A float flag: --scaling-factor (a finite positive normal float) or --softcap (also 0 = off).
 * 0 in the spec struct means the default, so a nonzero text that rounds to 0 must not pass. */
static int parse_float(const char *flag, const char *text, int zero_ok, float *out)
{
    char *end;
    errno = 0;
    const double v = strtod(text, &end);
    if (end == text || *end || isspace((unsigned char)text[0])) {
        cli_error("%s: \"%s\" is not a number", flag, text);
        return -1;
    }
    const char *why = errno == ERANGE ? (fabs(v) >= 1 ? "it overflows a float" : "it rounds to 0 as a float")
                                      : cli_float_problem(v, zero_ok);
    if (why) {
        cli_error("%s: \"%s\" must be %sa finite positive normal float: %s", flag, text, zero_ok ? "0 (off) or " : "",
                  why);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_split_list(const char *flag, const char *text, int (*fn)(const char *flag, const char *item, void *user),
                   void *user)
{
    char *copy = strdup(text); /* any length: items are cut out in place */
    if (!copy) {
        cli_error("out of memory");
        return -1;
    }
    int rc = 0, index = 1;
    for (char *item = copy; rc == 0; index++) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        if (!*item) {
            if (!comma && index == 1) cli_error("%s: the value is empty", flag);
            else cli_error("%s: \"%s\": item %d is empty", flag, text, index);
            rc = -1;
        } else {
            rc = fn(flag, item, user);
        }
        if (!comma) break;
        item = comma + 1;
    }
    free(copy);
    return rc;
}

/* A growing list of ints (the values of one list flag). */
typedef struct int_list {
    int *v;
    size_t n, cap;
} int_list;

static int int_list_push(int_list *l, int x)
{
    if (l->n == l->cap) {
        const size_t cap = l->cap ? 2 * l->cap : 8;
        int *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            cli_error("out of memory");
            return -1;
        }
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = x;
    return 0;
}

static void int_list_free(int_list *l)
{
    free(l->v);
    memset(l, 0, sizeof *l);
}

typedef struct range_list {
    long min, max;
    int_list *out;
} range_list;

static int take_count(const char *flag, const char *item, void *user)
{
    range_list *r = user;
    long v;
    return cli_parse_int(flag, item, r->min, r->max, &v) ? -1 : int_list_push(r->out, (int)v);
}

/* A list of integers in min..max; without the flag, the single value dflt. */
static int parse_counts(const char *flag, const char *text, long min, long max, int dflt, int_list *out)
{
    if (!text) return int_list_push(out, dflt);
    range_list r = {min, max, out};
    return cli_split_list(flag, text, take_count, &r);
}

typedef struct enum_list {
    int (*parse)(const char *);
    const char *choices;
    int_list *out;
} enum_list;

static int take_enum(const char *flag, const char *item, void *user)
{
    enum_list *e = user;
    const int v = e->parse(item);
    if (v < 0) {
        cli_error("%s: \"%s\" is not one of %s", flag, item, e->choices);
        return -1;
    }
    return int_list_push(e->out, v);
}

static int parse_enums(const char *flag, const char *text, int (*parse)(const char *), const char *choices, int dflt,
                       int_list *out)
{
    if (!text) return int_list_push(out, dflt);
    enum_list e = {parse, choices, out};
    return cli_split_list(flag, text, take_enum, &e);
}

#define SCORE_CHOICES "softmax, sigmoid, sqrt_softplus"
#define DTYPE_CHOICES "f32, bf16, f16"
#define INDEX_DTYPE_CHOICES "int32, int64, int16"

int cli_parse_dtypes(const char *flag, const char *text, int *dtypes, int cap)
{
    int_list l = {0};
    int rc = parse_enums(flag, text, mj_dtype_parse, DTYPE_CHOICES, MOEJIT_DTYPE_F32, &l);
    if (rc == 0 && l.n > (size_t)cap) {
        cli_error("%s: \"%s\" lists %zu values; at most %d", flag, text, l.n, cap);
        rc = -1;
    }
    if (rc == 0) memcpy(dtypes, l.v, sizeof(int) * l.n);
    const int n = rc ? -1 : (int)l.n;
    int_list_free(&l);
    return n;
}

/* ---- spec flags ---------------------------------------------------------------------------------- */

enum {
    OPT_OP = 1000, OPT_EXPERTS, OPT_TOPK, OPT_SCORE, OPT_DTYPE, OPT_GROUPS, OPT_TOPK_GROUPS, OPT_GROUP_SCORE,
    OPT_BIAS, OPT_SOFTCAP, OPT_AFTER, OPT_RENORM, OPT_SCALE_OUTPUT, OPT_FACTOR, OPT_SHARED, OPT_HIDDEN, OPT_ROW_SCALE,
    OPT_BLOCK_SIZE, OPT_COLS, OPT_ID_DTYPE, OPT_GLOBAL_EXPERTS, OPT_PADDED, OPT_REPLICAS, OPT_PHYSICAL, OPT_LOAD,
    OPT_REPLAY, OPT_LOGICAL_ID_DTYPE, OPT_RANKS, OPT_RANKS_PER_NODE, OPT_DROP_POLICY,
    OPT_AUX_STATS, OPT_SEQ_OFFSET_DTYPE,
    OPT_LAST = OPT_SEQ_OFFSET_DTYPE
};
#define FLAG(id) (1u << ((id) - OPT_OP))

const struct option spec_long_options[SPEC_OPTION_COUNT] = {
    {"op", required_argument, NULL, OPT_OP},
    {"experts", required_argument, NULL, OPT_EXPERTS},
    {"topk", required_argument, NULL, OPT_TOPK},
    {"score", required_argument, NULL, OPT_SCORE},
    {"dtype", required_argument, NULL, OPT_DTYPE},
    {"groups", required_argument, NULL, OPT_GROUPS},
    {"topk-groups", required_argument, NULL, OPT_TOPK_GROUPS},
    {"group-score", required_argument, NULL, OPT_GROUP_SCORE},
    {"bias", no_argument, NULL, OPT_BIAS},
    {"softcap", required_argument, NULL, OPT_SOFTCAP},
    {"score-after-topk", no_argument, NULL, OPT_AFTER},
    {"renormalize", no_argument, NULL, OPT_RENORM},
    {"scale-output", no_argument, NULL, OPT_SCALE_OUTPUT},
    {"scaling-factor", required_argument, NULL, OPT_FACTOR},
    {"shared-slots", required_argument, NULL, OPT_SHARED},
    {"hidden", required_argument, NULL, OPT_HIDDEN},
    {"row-scale", no_argument, NULL, OPT_ROW_SCALE},
    {"block-size", required_argument, NULL, OPT_BLOCK_SIZE},
    {"cols", required_argument, NULL, OPT_COLS},
    {"id-dtype", required_argument, NULL, OPT_ID_DTYPE},
    {"global-experts", required_argument, NULL, OPT_GLOBAL_EXPERTS},
    {"padded", no_argument, NULL, OPT_PADDED},
    {"replicas", required_argument, NULL, OPT_REPLICAS},
    {"physical-experts", required_argument, NULL, OPT_PHYSICAL},
    {"load-counter", required_argument, NULL, OPT_LOAD},
    {"replay", required_argument, NULL, OPT_REPLAY},
    {"logical-id-dtype", required_argument, NULL, OPT_LOGICAL_ID_DTYPE},
    {"ranks", required_argument, NULL, OPT_RANKS},
    {"ranks-per-node", required_argument, NULL, OPT_RANKS_PER_NODE},
    {"drop-policy", required_argument, NULL, OPT_DROP_POLICY},
    {"aux-stats", required_argument, NULL, OPT_AUX_STATS},
    {"seq-offset-dtype", required_argument, NULL, OPT_SEQ_OFFSET_DTYPE},
};

const char spec_options_help[] =
    "kernel spec (lists are comma separated; every combination is taken):\n"
    "  --op OP                     route (default), align, route_align, route_backward, mx_scales,\n"
    "                              dispatch_layout, permute, combine, permute_backward, combine_backward,\n"
    "                              capacity, route_losses\n"
    "  --dtype D[,D…]              f32 (default; bf16,f32 with --model), bf16, f16: route's logits,\n"
    "                              the rows of permute, combine and their backward\n"
    " route (and route_align, route_backward: its gradient), by hand or refining the --model presets:\n"
    "  --experts E[,E…]            number of experts, 1.." STR(MOEJIT_MAX_EXPERTS) " (required without --model)\n"
    "  --topk K[,K…]               experts chosen per token, 1..min(E, " STR(MOEJIT_MAX_TOPK) ") (required without --model)\n"
    "  --score S[,S…]              softmax (default), sigmoid, sqrt_softplus\n"
    "  --groups G --topk-groups TG grouped selection: G divides E, TG <= G (1.." STR(MOEJIT_MAX_EXPERTS) ")\n"
    "  --group-score max|top2_sum  how a group is scored (default max)\n"
    "  --bias                      a selection bias [E] is passed at launch\n"
    "  --softcap X                 soft-cap logits as X*tanh(x/X) first: 0 (off) or a finite positive\n"
    "                              normal float\n"
    "  --score-after-topk          choose on raw logits, score only the K chosen\n"
    "  --renormalize               weights /= their sum\n"
    "  --scale-output              weights *= the scaling factor\n"
    "  --scaling-factor X          routed scaling factor, a finite positive normal float (default 1)\n"
    "  --shared-slots S            fused shared-expert slots per row, 0.." STR(MOEJIT_MAX_TOPK) "\n"
    "  serving (moejit.h route steps 8-12):\n"
    "  --padded                    a device count of valid rows is passed at launch (CUDA graphs)\n"
    "  --id-dtype int32|int64|int16  type of the ids written (default int32)\n"
    "  --replicas R --physical-experts P  expert placement: up to R replicas per expert, P physical\n"
    "                              experts (EPLB)\n"
    "  --load-counter int32|int64  count each physical expert's routed slots\n"
    "  --replay record|given       write the logical ids too, or take them as given\n"
    "  --logical-id-dtype int32|int64|int16  type of the logical ids (default int32)\n"
    "  auxiliary losses (route step 13; route and route_backward, not route_align):\n"
    "  --aux-stats A[,A…]          statistics route adds up for the losses, one set (the names joined):\n"
    "                              lb (load balance), seq (per sequence), z (z-loss); route_backward:\n"
    "                              the losses' gradient too\n"
    "  --seq-offset-dtype int32|int64  type of the sequence offsets with seq (default int32)\n"
    " route_losses (the losses from route's statistics; --model gives the presets' E and K):\n"
    "  --experts E[,E…] --topk K[,K…]  the forward's E and K (required without --model)\n"
    "  --aux-stats A[,A…]          the forward's set of statistics: lb, seq, z (required)\n"
    "  --seq-offset-dtype int32|int64  as the forward's\n"
    " permute, combine, permute_backward, combine_backward:\n"
    "  --hidden H[,H…]             elements per row, 1.." STR(MOEJIT_MAX_HIDDEN) " (required)\n"
    "  --row-scale                 permute, permute_backward: rows are scaled per expert\n"
    " align:\n"
    "  --experts E[,E…]            local experts, 1.." STR(MOEJIT_MAX_ALIGN_EXPERTS) " (required)\n"
    "  --block-size B[,B…]         rows per block, a power of two in " STR(MOEJIT_ALIGN_MIN_BLOCK) ".." STR(
        MOEJIT_ALIGN_MAX_BLOCK) " (required; also route_align)\n"
    "  --id-dtype T[,T…]           int32 (default), int64, int16: the type of the ids read\n"
    "  --global-experts EG[,EG…]   global ids, mapped to local experts by an expert map of EG entries,\n"
    "                              1.." STR(MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS) "; 0 (default): no map, local = id - first_expert\n"
    " mx_scales:\n"
    "  --cols C[,C…]               e8m0 scales per row (K / 32), 1.." STR(MOEJIT_MAX_MX_COLS) " (required)\n"
    " dispatch_layout:\n"
    "  --experts E[,E…]            experts over all ranks (shared slots included), 1..4160 (required)\n"
    "  --ranks R[,R…]              ranks, each holding E/R consecutive experts; R divides E (required)\n"
    "  --topk K[,K…]               ids per token, 1..128 (required)\n"
    "  --id-dtype T[,T…]           int32 (default), int64, int16: the ids' type\n"
    "  --ranks-per-node N[,N…]     ranks of a node for tokens_per_node, dividing R (default 8, or R\n"
    "                              below 8)\n"
    " capacity (the capacity itself, or its factor, is a launch argument: one kernel serves them all):\n"
    "  --experts E[,E…]            experts, 1.." STR(MOEJIT_MAX_EXPERTS) " (required)\n"
    "  --topk K[,K…]               routed ids per token, 1.." STR(MOEJIT_MAX_TOPK) " (required)\n"
    "  --shared-slots S            shared slots after them, never dropped, 0.." STR(MOEJIT_MAX_TOPK) "\n"
    "  --id-dtype T[,T…]           int32 (default), int64, int16: the ids' type\n"
    "  --drop-policy P[,P…]        probs (default: keep the largest weights), position (keep the first)\n";

/* The flags that describe each op's kernels (beyond --op), and whether --dtype applies. */
#define ROUTE_FLAGS                                                                                        \
    (FLAG(OPT_EXPERTS) | FLAG(OPT_TOPK) | FLAG(OPT_SCORE) | FLAG(OPT_GROUPS) | FLAG(OPT_TOPK_GROUPS) |     \
     FLAG(OPT_GROUP_SCORE) | FLAG(OPT_BIAS) | FLAG(OPT_SOFTCAP) | FLAG(OPT_AFTER) | FLAG(OPT_RENORM) |     \
     FLAG(OPT_SCALE_OUTPUT) | FLAG(OPT_FACTOR) | FLAG(OPT_SHARED) | FLAG(OPT_PADDED) | FLAG(OPT_ID_DTYPE) |     \
     FLAG(OPT_REPLICAS) | FLAG(OPT_PHYSICAL) | FLAG(OPT_LOAD) | FLAG(OPT_REPLAY) | FLAG(OPT_LOGICAL_ID_DTYPE))
#define ROUTE_AUX_FLAGS (FLAG(OPT_AUX_STATS) | FLAG(OPT_SEQ_OFFSET_DTYPE))
#define ALIGN_FLAGS (FLAG(OPT_EXPERTS) | FLAG(OPT_BLOCK_SIZE) | FLAG(OPT_ID_DTYPE) | FLAG(OPT_GLOBAL_EXPERTS))
static const struct {
    const char *op;
    moejit_op id;
    unsigned flags;
    int takes_dtype;
} k_spec_ops[] = {
    {"route", MOEJIT_OP_ROUTE, ROUTE_FLAGS | ROUTE_AUX_FLAGS, 1},
    {"align", MOEJIT_OP_ALIGN, ALIGN_FLAGS, 0},
    {"route_align", MOEJIT_OP_ROUTE_ALIGN, ROUTE_FLAGS | FLAG(OPT_BLOCK_SIZE), 1},
    {"route_backward", MOEJIT_OP_ROUTE_BACKWARD, ROUTE_FLAGS | ROUTE_AUX_FLAGS, 1},
    {"mx_scales", MOEJIT_OP_MX_SCALES, FLAG(OPT_COLS), 0},
    {"dispatch_layout", MOEJIT_OP_DISPATCH_LAYOUT,
     FLAG(OPT_EXPERTS) | FLAG(OPT_RANKS) | FLAG(OPT_TOPK) | FLAG(OPT_ID_DTYPE) | FLAG(OPT_RANKS_PER_NODE), 0},
    {"permute", MOEJIT_OP_PERMUTE, FLAG(OPT_HIDDEN) | FLAG(OPT_ROW_SCALE), 1},
    {"combine", MOEJIT_OP_COMBINE, FLAG(OPT_HIDDEN), 1},
    {"permute_backward", MOEJIT_OP_PERMUTE_BACKWARD, FLAG(OPT_HIDDEN) | FLAG(OPT_ROW_SCALE), 1},
    {"combine_backward", MOEJIT_OP_COMBINE_BACKWARD, FLAG(OPT_HIDDEN), 1},
    {"capacity", MOEJIT_OP_CAPACITY,
     FLAG(OPT_EXPERTS) | FLAG(OPT_TOPK) | FLAG(OPT_SHARED) | FLAG(OPT_ID_DTYPE) | FLAG(OPT_DROP_POLICY), 0},
    {"route_losses", MOEJIT_OP_ROUTE_LOSSES, FLAG(OPT_EXPERTS) | FLAG(OPT_TOPK) | ROUTE_AUX_FLAGS, 0},
};
#define SPEC_OP_NAMES                                                                                      \
    "route, align, route_align, route_backward, mx_scales, dispatch_layout, permute, combine, permute_backward, "    \
    "combine_backward, capacity, route_losses"

static const char *flag_name(int id)
{
    for (int i = 0; i < SPEC_OPTION_COUNT; i++)
        if (spec_long_options[i].val == id) return spec_long_options[i].name;
    return "?";
}

/* Where a flag's value is kept (NULL for the switches). */
static const char **value_slot(spec_options *o, int id)
{
    switch (id) {
    case OPT_OP: return &o->op;
    case OPT_EXPERTS: return &o->experts;
    case OPT_TOPK: return &o->topk;
    case OPT_SCORE: return &o->score;
    case OPT_DTYPE: return &o->dtype;
    case OPT_GROUPS: return &o->groups;
    case OPT_TOPK_GROUPS: return &o->topk_groups;
    case OPT_GROUP_SCORE: return &o->group_score;
    case OPT_SOFTCAP: return &o->softcap;
    case OPT_FACTOR: return &o->scaling_factor;
    case OPT_SHARED: return &o->shared_slots;
    case OPT_DROP_POLICY: return &o->drop_policy;
    case OPT_HIDDEN: return &o->hidden;
    case OPT_BLOCK_SIZE: return &o->block_size;
    case OPT_COLS: return &o->cols;
    case OPT_ID_DTYPE: return &o->id_dtype;
    case OPT_GLOBAL_EXPERTS: return &o->global_experts;
    case OPT_REPLICAS: return &o->replicas;
    case OPT_PHYSICAL: return &o->physical_experts;
    case OPT_LOAD: return &o->load_counter;
    case OPT_REPLAY: return &o->replay;
    case OPT_LOGICAL_ID_DTYPE: return &o->logical_id_dtype;
    case OPT_RANKS: return &o->ranks;
    case OPT_RANKS_PER_NODE: return &o->ranks_per_node;
    case OPT_AUX_STATS: return &o->aux_stats;
    case OPT_SEQ_OFFSET_DTYPE: return &o->seq_offset_dtype;
    default: return NULL;
    }
}

int spec_options_take(spec_options *o, int id, const char *arg)
{
    if (id < OPT_OP || id > OPT_LAST) return 0;
    const char **slot = value_slot(o, id);
    if (slot && *slot) { /* the second value would silently replace the first */
        cli_error("--%s is given twice (\"%s\", then \"%s\"): give one comma list", flag_name(id), *slot, arg);
        return -1;
    }
    if (slot) *slot = arg;
    switch (id) {
    case OPT_BIAS: o->bias = 1; break;
    case OPT_AFTER: o->score_after_topk = 1; break;
    case OPT_RENORM: o->renormalize = 1; break;
    case OPT_SCALE_OUTPUT: o->scale_output = 1; break;
    case OPT_ROW_SCALE: o->row_scale = 1; break;
    case OPT_PADDED: o->padded = 1; break;
    default: break;
    }
    o->given |= FLAG(id);
    if (id != OPT_DTYPE) o->have_any = 1;
    return 1;
}

/* Every combination of the lists must stay a sane number of kernels. */
enum { MAX_KERNELS = 1 << 20 };

static moejit_kernel_desc *alloc_descs(size_t n)
{
    if (n > MAX_KERNELS) {
        cli_error("the spec flags describe %zu kernels; at most %d", n, MAX_KERNELS);
        return NULL;
    }
    moejit_kernel_desc *d = calloc(n ? n : 1, sizeof *d);
    if (!d) cli_error("out of memory");
    return d;
}

/* A single integer flag in min..max into *out (left alone without the flag). */
static int scalar_count(const char *flag, const char *text, long min, long max, int32_t *out)
{
    long v;
    if (!text) return 0;
    if (cli_parse_int(flag, text, min, max, &v)) return -1;
    *out = (int32_t)v;
    return 0;
}


/* A single enum flag's value into *out (left alone without the flag). */
static int parse_one_enum(const char *flag, const char *text, int (*parse)(const char *), const char *choices, int *out)
{
    if (!text) return 0;
    const int v = parse(text);
    if (v < 0) {
        cli_error("%s: \"%s\" is not one of %s", flag, text, choices);
        return -1;
    }
    *out = v;
    return 0;
}

#define AUX_STATS_CHOICES "lb, seq, z"
#define SEQ_OFFSET_DTYPE_CHOICES "int32, int64"

static int parse_seq_offset_dtype(const char *s)
{
    const int v = mj_index_dtype_parse(s);
    return v == MOEJIT_INDEX_INT16 ? -1 : v;
}

static int take_aux(const char *flag, const char *item, void *user)
{
    const int f = mj_aux_stats_parse(item);
    if (f < 0) {
        cli_error("%s: \"%s\" is not one of " AUX_STATS_CHOICES, flag, item);
        return -1;
    }
    *(uint32_t *)user |= (uint32_t)f;
    return 0;
}

/* --aux-stats (a set: "lb,seq,z" is one value, not a list of kernels) and --seq-offset-dtype into
 * the spec's fields (left alone without the flags). */
static int parse_aux(const spec_options *o, uint32_t *aux_stats, moejit_index_dtype *seq_offset_dtype)
{
    if (o->aux_stats) {
        uint32_t f = 0;
        if (cli_split_list("--aux-stats", o->aux_stats, take_aux, &f)) return -1;
        *aux_stats = f;
    }
    return parse_one_enum("--seq-offset-dtype", o->seq_offset_dtype, parse_seq_offset_dtype, SEQ_OFFSET_DTYPE_CHOICES,
                          (int *)seq_offset_dtype);
}

/* route: --experts × --topk × --score × --dtype over the scalar flags, by hand (preset NULL) or
 * refining a preset (a flag not given keeps the preset's value, as a manifest field does). */
static int build_route(const spec_options *o, const char *op, const moejit_route_spec *preset, moejit_kernel_desc **out)
{
    if (!preset && (!o->experts || !o->topk)) {
        cli_error("--experts and --topk are required with --op %s (or give --model NAME)", op);
        return -1;
    }
    moejit_route_spec base;
    memset(&base, 0, sizeof base);
    if (preset) base = *preset;
    int_list es = {0}, ks = {0}, scores = {0}, dtypes = {0};
    int rc = parse_counts("--experts", o->experts, 1, MOEJIT_MAX_EXPERTS, base.num_experts, &es);
    if (!rc) rc = parse_counts("--topk", o->topk, 1, MOEJIT_MAX_TOPK, base.topk, &ks);
    if (!rc) rc = parse_enums("--score", o->score, mj_score_parse, SCORE_CHOICES, (int)base.score, &scores);
    if (!rc)
        rc = parse_enums("--dtype", o->dtype ? o->dtype : preset ? SELECT_MODEL_DTYPES : NULL, mj_dtype_parse,
                         DTYPE_CHOICES, (int)base.dtype, &dtypes);
    if (!rc) rc = scalar_count("--groups", o->groups, 1, MOEJIT_MAX_EXPERTS, &base.num_groups);
    if (!rc) rc = scalar_count("--topk-groups", o->topk_groups, 1, MOEJIT_MAX_EXPERTS, &base.topk_groups);
    if (!rc) rc = scalar_count("--shared-slots", o->shared_slots, 0, MOEJIT_MAX_TOPK, &base.shared_slots);
    if (!rc && o->group_score) {
        const int g = mj_group_score_parse(o->group_score);
        if (g < 0) cli_error("--group-score: \"%s\" is not one of max, top2_sum", o->group_score), rc = -1;
        else base.group_score = (moejit_group_score)g;
    }
    if (!rc && o->softcap) rc = parse_float("--softcap", o->softcap, 1, &base.softcap);
    if (!rc && o->scaling_factor) rc = parse_float("--scaling-factor", o->scaling_factor, 0, &base.routed_scaling_factor);
    if (!rc) rc = scalar_count("--replicas", o->replicas, 1, MJ_ROUTE_MAX_REPLICAS, &base.max_replicas);
    if (!rc) rc = scalar_count("--physical-experts", o->physical_experts, 1, MJ_ROUTE_MAX_PHYSICAL_EXPERTS,
                               &base.num_physical_experts);
    if (!rc) rc = parse_one_enum("--id-dtype", o->id_dtype, mj_index_dtype_parse, INDEX_DTYPE_CHOICES, (int *)&base.id_dtype);
    if (!rc)
        rc = parse_one_enum("--logical-id-dtype", o->logical_id_dtype, mj_index_dtype_parse, INDEX_DTYPE_CHOICES,
                            (int *)&base.logical_id_dtype);
    if (!rc) rc = parse_one_enum("--load-counter", o->load_counter, mj_load_counter_parse, "none, int32, int64",
                                 (int *)&base.load_counter);
    if (!rc) rc = parse_one_enum("--replay", o->replay, mj_replay_parse, "off, record, given", (int *)&base.replay);
    if (!rc) rc = parse_aux(o, &base.aux_stats, &base.seq_offset_dtype);
    if (o->padded) base.padded = 1;
    if (o->bias) base.has_bias = 1;
    if (o->score_after_topk) base.score_after_topk = 1;
    if (o->renormalize) base.renormalize = 1;
    if (o->scale_output) base.scale_output = 1;

    const size_t n = es.n * ks.n * scores.n * dtypes.n;
    moejit_kernel_desc *descs = rc ? NULL : alloc_descs(n);
    if (descs) {
        size_t i = 0;
        for (size_t a = 0; a < es.n; a++)
            for (size_t b = 0; b < ks.n; b++)
                for (size_t c = 0; c < scores.n; c++)
                    for (size_t d = 0; d < dtypes.n; d++, i++) {
                        descs[i].op = MOEJIT_OP_ROUTE;
                        descs[i].route = base;
                        descs[i].route.num_experts = es.v[a];
                        descs[i].route.topk = ks.v[b];
                        descs[i].route.score = (moejit_score)scores.v[c];
                        descs[i].route.dtype = (moejit_dtype)dtypes.v[d];
                    }
    }
    int_list_free(&es), int_list_free(&ks), int_list_free(&scores), int_list_free(&dtypes);
    if (!descs) return -1;
    *out = descs;
    return (int)n;
}

/* A list of counts that the op cannot do without. */
static int required_counts(const char *op, const char *flag, const char *text, long min, long max, int_list *out)
{
    if (!text) {
        cli_error("%s is required with --op %s", flag, op);
        return -1;
    }
    return parse_counts(flag, text, min, max, 0, out);
}

/* permute, combine and their backward: --hidden × --dtype. */
static int build_rows(const spec_options *o, const char *op, moejit_op id, moejit_kernel_desc **out)
{
    int_list hs = {0}, dtypes = {0};
    int rc = required_counts(op, "--hidden", o->hidden, 1, MOEJIT_MAX_HIDDEN, &hs);
    if (!rc) rc = parse_enums("--dtype", o->dtype, mj_dtype_parse, DTYPE_CHOICES, MOEJIT_DTYPE_F32, &dtypes);
    const size_t n = hs.n * dtypes.n;
    moejit_kernel_desc *descs = rc ? NULL : alloc_descs(n);
    if (descs)
        for (size_t a = 0, i = 0; a < hs.n; a++)
            for (size_t d = 0; d < dtypes.n; d++, i++) {
                const moejit_dtype dt = (moejit_dtype)dtypes.v[d];
                descs[i].op = id;
                switch (id) {
                case MOEJIT_OP_PERMUTE:
                    descs[i].permute = (moejit_permute_spec){.hidden = hs.v[a], .dtype = dt, .has_scale = o->row_scale};
                    break;
                case MOEJIT_OP_PERMUTE_BACKWARD:
                    descs[i].permute_backward =
                        (moejit_permute_backward_spec){.hidden = hs.v[a], .dtype = dt, .has_scale = o->row_scale};
                    break;
                case MOEJIT_OP_COMBINE_BACKWARD:
                    descs[i].combine_backward = (moejit_combine_backward_spec){.hidden = hs.v[a], .dtype = dt};
                    break;
                default: descs[i].combine = (moejit_combine_spec){.hidden = hs.v[a], .dtype = dt}; break;
                }
            }
    int_list_free(&hs), int_list_free(&dtypes);
    if (!descs) return -1;
    *out = descs;
    return (int)n;
}

/* align: --experts × --block-size × --id-dtype × --global-experts. */
static int build_align(const spec_options *o, moejit_kernel_desc **out)
{
    int_list es = {0}, bs = {0}, ids = {0}, gs = {0};
    int rc = required_counts("align", "--experts", o->experts, 1, MOEJIT_MAX_ALIGN_EXPERTS, &es);
    if (!rc)
        rc = required_counts("align", "--block-size", o->block_size, MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK, &bs);
    if (!rc)
        rc = parse_enums("--id-dtype", o->id_dtype, mj_index_dtype_parse, INDEX_DTYPE_CHOICES, MOEJIT_INDEX_INT32, &ids);
    if (!rc) rc = parse_counts("--global-experts", o->global_experts, 0, MOEJIT_MAX_ALIGN_GLOBAL_EXPERTS, 0, &gs);
    const size_t n = es.n * bs.n * ids.n * gs.n;
    moejit_kernel_desc *descs = rc ? NULL : alloc_descs(n);
    if (descs)
        for (size_t a = 0, i = 0; a < es.n; a++)
            for (size_t b = 0; b < bs.n; b++)
                for (size_t c = 0; c < ids.n; c++)
                    for (size_t g = 0; g < gs.n; g++, i++) {
                        descs[i].op = MOEJIT_OP_ALIGN;
                        descs[i].align = (moejit_align_spec){.num_experts = es.v[a], .block_size = bs.v[b],
                                                             .id_dtype = (moejit_index_dtype)ids.v[c],
                                                             .global_experts = gs.v[g]};
                    }
    int_list_free(&es), int_list_free(&bs), int_list_free(&ids), int_list_free(&gs);
    if (!descs) return -1;
    *out = descs;
    return (int)n;
}

/* route_align: the route kernels of the route flags (or of the preset) × --block-size. */
static int build_route_align(const spec_options *o, const moejit_route_spec *preset, moejit_kernel_desc **out)
{
    int_list bs = {0};
    moejit_kernel_desc *routes = NULL, *descs = NULL;
    int nr = -1;
    if (!required_counts("route_align", "--block-size", o->block_size, MOEJIT_ALIGN_MIN_BLOCK, MOEJIT_ALIGN_MAX_BLOCK,
                         &bs))
        nr = build_route(o, "route_align", preset, &routes);
    const size_t n = nr < 0 ? 0 : (size_t)nr * bs.n;
    if (nr >= 0) descs = alloc_descs(n);
    if (descs)
        for (size_t a = 0, i = 0; a < (size_t)nr; a++)
            for (size_t b = 0; b < bs.n; b++, i++) {
                descs[i].op = MOEJIT_OP_ROUTE_ALIGN;
                descs[i].route_align = (moejit_route_align_spec){.route = routes[a].route, .block_size = bs.v[b]};
            }
    free(routes);
    int_list_free(&bs);
    if (!descs) return -1;
    *out = descs;
    return (int)n;
}

/* route_backward: the route kernels of the route flags (or of the preset), differentiated. */
static int build_route_backward(const spec_options *o, const moejit_route_spec *preset, moejit_kernel_desc **out)
{
    const int n = build_route(o, "route_backward", preset, out);
    for (int i = 0; i < n; i++) {
        const moejit_route_spec r = (*out)[i].route;
        memset(&(*out)[i], 0, sizeof **out);
        (*out)[i].op = MOEJIT_OP_ROUTE_BACKWARD;
        (*out)[i].route_backward.route = r;
    }
    return n;
}

/* mx_scales: --cols. */
static int build_mx_scales(const spec_options *o, moejit_kernel_desc **out)
{
    int_list cs = {0};
    const int rc = required_counts("mx_scales", "--cols", o->cols, 1, MOEJIT_MAX_MX_COLS, &cs);
    moejit_kernel_desc *descs = rc ? NULL : alloc_descs(cs.n);
    if (descs)
        for (size_t a = 0; a < cs.n; a++) {
            descs[a].op = MOEJIT_OP_MX_SCALES;
            descs[a].mx_scales.cols = cs.v[a];
        }
    const int n = (int)cs.n;
    int_list_free(&cs);
    if (!descs) return -1;
    *out = descs;
    return n;
}

#define INDEX_DTYPE_CHOICES "int32, int64, int16"

/* dispatch_layout: --experts × --ranks × --topk × --id-dtype × --ranks-per-node. */
static int build_dispatch_layout(const spec_options *o, moejit_kernel_desc **out)
{
    int_list es = {0}, rs = {0}, ks = {0}, dts = {0}, rpns = {0};
    int rc = required_counts("dispatch_layout", "--experts", o->experts, 1, MOEJIT_MAX_EXPERTS + MOEJIT_MAX_TOPK, &es);
    if (!rc) rc = required_counts("dispatch_layout", "--ranks", o->ranks, 1, MOEJIT_MAX_EXPERTS + MOEJIT_MAX_TOPK, &rs);
    if (!rc) rc = required_counts("dispatch_layout", "--topk", o->topk, 1, 2 * MOEJIT_MAX_TOPK, &ks);
    if (!rc)
        rc = parse_enums("--id-dtype", o->id_dtype, mj_index_dtype_parse, INDEX_DTYPE_CHOICES, MOEJIT_INDEX_INT32, &dts);
    if (!rc) rc = parse_counts("--ranks-per-node", o->ranks_per_node, 1, MOEJIT_MAX_EXPERTS + MOEJIT_MAX_TOPK, 0, &rpns);
    const size_t n = es.n * rs.n * ks.n * dts.n * rpns.n;
    moejit_kernel_desc *descs = rc ? NULL : alloc_descs(n);
    if (descs) {
        size_t i = 0;
        for (size_t a = 0; a < es.n; a++)
            for (size_t b = 0; b < rs.n; b++)
                for (size_t c = 0; c < ks.n; c++)
                    for (size_t d = 0; d < dts.n; d++)
                        for (size_t r = 0; r < rpns.n; r++, i++) {
                            descs[i].op = MOEJIT_OP_DISPATCH_LAYOUT;
                            descs[i].dispatch_layout = (moejit_dispatch_layout_spec){
                                .num_experts = es.v[a], .num_ranks = rs.v[b], .topk = ks.v[c],
                                .id_dtype = (moejit_index_dtype)dts.v[d], .ranks_per_node = rpns.v[r]};
                        }
    }
    int_list_free(&es), int_list_free(&rs), int_list_free(&ks), int_list_free(&dts), int_list_free(&rpns);
    if (!descs) return -1;
    *out = descs;
    return (int)n;
}

/* capacity: --experts × --topk × --id-dtype × --drop-policy, with --shared-slots. */
static int build_capacity(const spec_options *o, moejit_kernel_desc **out)
{
    int_list es = {0}, ks = {0}, dts = {0}, pols = {0};
    int32_t shared = 0;
    int rc = required_counts("capacity", "--experts", o->experts, 1, MOEJIT_MAX_EXPERTS, &es);
    if (!rc) rc = required_counts("capacity", "--topk", o->topk, 1, MOEJIT_MAX_TOPK, &ks);
    if (!rc) rc = scalar_count("--shared-slots", o->shared_slots, 0, MOEJIT_MAX_TOPK, &shared);
    if (!rc)
        rc = parse_enums("--id-dtype", o->id_dtype, mj_index_dtype_parse, INDEX_DTYPE_CHOICES, MOEJIT_INDEX_INT32, &dts);
    if (!rc) rc = parse_enums("--drop-policy", o->drop_policy, mj_drop_policy_parse, "probs, position", 0, &pols);
    const size_t n = es.n * ks.n * dts.n * pols.n;
    moejit_kernel_desc *descs = rc ? NULL : alloc_descs(n);
    if (descs) {
        size_t i = 0;
        for (size_t a = 0; a < es.n; a++)
            for (size_t c = 0; c < ks.n; c++)
                for (size_t d = 0; d < dts.n; d++)
                    for (size_t q = 0; q < pols.n; q++, i++) {
                        descs[i].op = MOEJIT_OP_CAPACITY;
                        descs[i].capacity = (moejit_capacity_spec){
                            .num_experts = es.v[a], .topk = ks.v[c], .shared_slots = shared,
                            .id_dtype = (moejit_index_dtype)dts.v[d], .policy = (moejit_drop_policy)pols.v[q]};
                    }
    }
    int_list_free(&es), int_list_free(&ks), int_list_free(&dts), int_list_free(&pols);
    if (!descs) return -1;
    *out = descs;
    return (int)n;
}

/* route_losses: --experts × --topk (or the preset's E and K) with the forward's --aux-stats. */
static int build_route_losses(const spec_options *o, const moejit_route_spec *preset, moejit_kernel_desc **out)
{
    if (!preset && (!o->experts || !o->topk)) {
        cli_error("--experts and --topk are required with --op route_losses (or give --model NAME)");
        return -1;
    }
    if (!o->aux_stats) {
        cli_error("--aux-stats is required with --op route_losses (lb, seq, z: the forward's statistics)");
        return -1;
    }
    moejit_route_losses_spec base;
    memset(&base, 0, sizeof base);
    int_list es = {0}, ks = {0};
    int rc = parse_counts("--experts", o->experts, 1, MOEJIT_MAX_EXPERTS, preset ? preset->num_experts : 0, &es);
    if (!rc) rc = parse_counts("--topk", o->topk, 1, MOEJIT_MAX_TOPK, preset ? preset->topk : 0, &ks);
    if (!rc) rc = parse_aux(o, &base.aux_stats, &base.seq_offset_dtype);
    const size_t n = es.n * ks.n;
    moejit_kernel_desc *descs = rc ? NULL : alloc_descs(n);
    if (descs)
        for (size_t a = 0, i = 0; a < es.n; a++)
            for (size_t b = 0; b < ks.n; b++, i++) {
                descs[i].op = MOEJIT_OP_ROUTE_LOSSES;
                descs[i].route_losses = base;
                descs[i].route_losses.num_experts = es.v[a];
                descs[i].route_losses.topk = ks.v[b];
            }
    int_list_free(&es), int_list_free(&ks);
    if (!descs) return -1;
    *out = descs;
    return (int)n;
}

int spec_options_build(const spec_options *o, const moejit_route_spec *preset, moejit_kernel_desc **out)
{
    *out = NULL;
    const char *op = o->op ? o->op : "route";
    size_t which = sizeof k_spec_ops / sizeof k_spec_ops[0];
    for (size_t i = 0; i < sizeof k_spec_ops / sizeof k_spec_ops[0]; i++)
        if (!strcmp(op, k_spec_ops[i].op)) which = i;
    if (which == sizeof k_spec_ops / sizeof k_spec_ops[0]) {
        cli_error("--op: \"%s\" is not one of " SPEC_OP_NAMES, op);
        return -1;
    }
    const moejit_op id = k_spec_ops[which].id;
    if (preset && id != MOEJIT_OP_ROUTE && id != MOEJIT_OP_ROUTE_ALIGN && id != MOEJIT_OP_ROUTE_BACKWARD &&
        id != MOEJIT_OP_ROUTE_LOSSES) {
        cli_error("--model gives route, route_align, route_backward or route_losses kernels (presets are routings); "
                  "--op %s kernels need a run of their own or a manifest",
                  op);
        return -1;
    }
    const unsigned applies = k_spec_ops[which].flags | FLAG(OPT_OP) | (k_spec_ops[which].takes_dtype ? FLAG(OPT_DTYPE) : 0);
    for (int f = OPT_OP; f <= OPT_LAST; f++)
        if (o->given & ~applies & FLAG(f)) {
            cli_error("--%s does not apply to --op %s", flag_name(f), op);
            return -1;
        }
    switch (id) {
    case MOEJIT_OP_ROUTE: return build_route(o, op, preset, out);
    case MOEJIT_OP_ALIGN: return build_align(o, out);
    case MOEJIT_OP_ROUTE_ALIGN: return build_route_align(o, preset, out);
    case MOEJIT_OP_ROUTE_BACKWARD: return build_route_backward(o, preset, out);
    case MOEJIT_OP_MX_SCALES: return build_mx_scales(o, out);
    case MOEJIT_OP_DISPATCH_LAYOUT: return build_dispatch_layout(o, out);
    case MOEJIT_OP_CAPACITY: return build_capacity(o, out);
    case MOEJIT_OP_ROUTE_LOSSES: return build_route_losses(o, preset, out);
    default: return build_rows(o, op, id, out);
    }
}

moejit_status cli_open(const char *cache_dir, int jobs, moejit_ctx **ctx)
{
    moejit_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.cache_dir = cache_dir;
    cfg.compile_jobs = jobs;
    return moejit_open(&cfg, ctx);
}
