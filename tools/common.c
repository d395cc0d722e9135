/* Helpers shared by the subcommands: spec flags, number parsing, error reports. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "spec.h"

enum {
    OPT_OP = 1000, OPT_EXPERTS, OPT_TOPK, OPT_SCORE, OPT_DTYPE, OPT_GROUPS, OPT_TOPK_GROUPS, OPT_GROUP_SCORE,
    OPT_BIAS, OPT_SOFTCAP, OPT_AFTER, OPT_RENORM, OPT_SCALE_OUTPUT, OPT_FACTOR, OPT_SHARED, OPT_HIDDEN, OPT_ROW_SCALE,
    OPT_BLOCK_SIZE, OPT_COLS,
    OPT_LAST = OPT_COLS
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
};

const char spec_options_help[] =
    "kernel spec (lists are comma separated; every combination is taken):\n"
    "  --op OP                     route (default), align, route_align, mx_scales, permute, combine\n"
    "  --dtype D[,D…]              f32 (default), bf16, f16: route's logits, permute's and combine's rows\n"
    " route (and route_align):\n"
    "  --experts E[,E…]            number of experts, 1..4096 (required)\n"
    "  --topk K[,K…]               experts chosen per token, 1..min(E, 64) (required)\n"
    "  --score S[,S…]              softmax (default), sigmoid, sqrt_softplus\n"
    "  --groups G --topk-groups TG grouped selection (G divides E)\n"
    "  --group-score max|top2_sum  how a group is scored (default max)\n"
    "  --bias                      a selection bias [E] is passed at launch\n"
    "  --softcap X                 soft-cap logits as X*tanh(x/X) first\n"
    "  --score-after-topk          choose on raw logits, score only the K chosen\n"
    "  --renormalize               weights /= their sum\n"
    "  --scale-output              weights *= the scaling factor\n"
    "  --scaling-factor X          routed scaling factor (default 1)\n"
    "  --shared-slots S            fused shared-expert slots per row\n"
    " permute, combine:\n"
    "  --hidden H[,H…]             elements per row, 1..65536 (required)\n"
    "  --row-scale                 permute: rows are scaled per expert\n"
    " align:\n"
    "  --experts E[,E…]            local experts, 1..4096 (required)\n"
    "  --block-size B[,B…]         rows per block, a power of two in 1..1024 (required; also route_align)\n"
    " mx_scales:\n"
    "  --cols C[,C…]               e8m0 scales per row (K / 32), 1..65536 (required)\n";

/* The flags that describe each op's kernels (beyond --op), and whether --dtype applies. */
#define ROUTE_FLAGS                                                                                        \
    (FLAG(OPT_EXPERTS) | FLAG(OPT_TOPK) | FLAG(OPT_SCORE) | FLAG(OPT_GROUPS) | FLAG(OPT_TOPK_GROUPS) |     \
     FLAG(OPT_GROUP_SCORE) | FLAG(OPT_BIAS) | FLAG(OPT_SOFTCAP) | FLAG(OPT_AFTER) | FLAG(OPT_RENORM) |     \
     FLAG(OPT_SCALE_OUTPUT) | FLAG(OPT_FACTOR) | FLAG(OPT_SHARED))
static const struct {
    const char *op;
    moejit_op id;
    unsigned flags;
    int takes_dtype;
} k_spec_ops[] = {
    {"route", MOEJIT_OP_ROUTE, ROUTE_FLAGS, 1},
    {"align", MOEJIT_OP_ALIGN, FLAG(OPT_EXPERTS) | FLAG(OPT_BLOCK_SIZE), 0},
    {"route_align", MOEJIT_OP_ROUTE_ALIGN, ROUTE_FLAGS | FLAG(OPT_BLOCK_SIZE), 1},
    {"mx_scales", MOEJIT_OP_MX_SCALES, FLAG(OPT_COLS), 0},
    {"permute", MOEJIT_OP_PERMUTE, FLAG(OPT_HIDDEN) | FLAG(OPT_ROW_SCALE), 1},
    {"combine", MOEJIT_OP_COMBINE, FLAG(OPT_HIDDEN), 1},
};
#define SPEC_OP_NAMES "route, align, route_align, mx_scales, permute, combine"

int spec_options_take(spec_options *o, int id, const char *arg)
{
    switch (id) {
    case OPT_OP: o->op = arg; break;
    case OPT_EXPERTS: o->experts = arg; break;
    case OPT_TOPK: o->topk = arg; break;
    case OPT_SCORE: o->score = arg; break;
    case OPT_DTYPE: o->dtype = arg; break;
    case OPT_GROUPS: o->groups = arg; break;
    case OPT_TOPK_GROUPS: o->topk_groups = arg; break;
    case OPT_GROUP_SCORE: o->group_score = arg; break;
    case OPT_BIAS: o->bias = 1; break;
    case OPT_SOFTCAP: o->softcap = arg; break;
    case OPT_AFTER: o->score_after_topk = 1; break;
    case OPT_RENORM: o->renormalize = 1; break;
    case OPT_SCALE_OUTPUT: o->scale_output = 1; break;
    case OPT_FACTOR: o->scaling_factor = arg; break;
    case OPT_SHARED: o->shared_slots = arg; break;
    case OPT_HIDDEN: o->hidden = arg; break;
    case OPT_ROW_SCALE: o->row_scale = 1; break;
    case OPT_BLOCK_SIZE: o->block_size = arg; break;
    case OPT_COLS: o->cols = arg; break;
    default: return 0;
    }
    o->given |= FLAG(id);
    if (id != OPT_DTYPE) o->have_any = 1;
    return 1;
}

int cli_parse_int(const char *flag, const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf(stderr, "moejit: %s = \"%s\" must be an integer in %ld..%ld\n", flag, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_float(const char *flag, const char *text, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end) {
        fprintf(stderr, "moejit: %s = \"%s\" is not a number\n", flag, text);
        return -1;
    }
    *out = (float)v;
    return 0;
}

/* Split a comma list into at most `cap` items of `field`, parsing each. Returns the count or -1. */
typedef int (*item_parser)(const char *flag, const char *item, int *out);

static int parse_count(const char *flag, const char *item, int *out)
{
    long v;
    if (cli_parse_int(flag, item, 0, 1 << 20, &v)) return -1;
    *out = (int)v;
    return 0;
}

static int parse_enum(const char *flag, const char *item, int *out, int (*parse)(const char *), const char *choices)
{
    *out = parse(item);
    if (*out < 0) {
        fprintf(stderr, "moejit: %s = \"%s\" must be one of %s\n", flag, item, choices);
        return -1;
    }
    return 0;
}
static int parse_score_item(const char *flag, const char *item, int *out)
{
    return parse_enum(flag, item, out, mj_score_parse, "softmax, sigmoid, sqrt_softplus");
}
static int parse_dtype_item(const char *flag, const char *item, int *out)
{
    return parse_enum(flag, item, out, mj_dtype_parse, "f32, bf16, f16");
}

enum { MAX_LIST = 64 };

static int parse_list(const char *flag, const char *text, item_parser parse, int *items, int dflt)
{
    if (!text) {
        items[0] = dflt;
        return 1;
    }
    int n = 0;
    char buf[1024];
    if (strlen(text) >= sizeof buf) {
        fprintf(stderr, "moejit: %s = \"%.40s…\" is longer than %zu characters\n", flag, text, sizeof buf - 1);
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_LIST) {
            fprintf(stderr, "moejit: %s lists at most %d values\n", flag, MAX_LIST);
            return -1;
        }
        if (parse(flag, tok, &items[n++])) return -1;
    }
    if (n == 0) {
        fprintf(stderr, "moejit: %s = \"%s\" lists no value\n", flag, text);
        return -1;
    }
    return n;
}

int cli_parse_dtypes(const char *flag, const char *text, int *dtypes, int cap)
{
    int tmp[MAX_LIST];
    const int n = parse_list(flag, text, parse_dtype_item, tmp, MOEJIT_DTYPE_F32);
    if (n < 0) return -1;
    if (n > cap) {
        fprintf(stderr, "moejit: %s lists at most %d values\n", flag, cap);
        return -1;
    }
    memcpy(dtypes, tmp, sizeof(int) * (size_t)n);
    return n;
}

static moejit_kernel_desc *alloc_descs(int n)
{
    moejit_kernel_desc *d = calloc((size_t)n, sizeof *d);
    if (!d) fprintf(stderr, "moejit: out of memory\n");
    return d;
}

static int build_route(const spec_options *o, moejit_kernel_desc **out)
{
    if (!o->experts || !o->topk) {
        fprintf(stderr, "moejit: --experts and --topk are required\n");
        return -1;
    }
    int es[MAX_LIST], ks[MAX_LIST], scores[MAX_LIST], dtypes[MAX_LIST];
    int ne = parse_list("--experts", o->experts, parse_count, es, 0);
    int nk = ne < 0 ? -1 : parse_list("--topk", o->topk, parse_count, ks, 0);
    int ns = nk < 0 ? -1 : parse_list("--score", o->score, parse_score_item, scores, MOEJIT_SCORE_SOFTMAX);
    int nd = ns < 0 ? -1 : parse_list("--dtype", o->dtype, parse_dtype_item, dtypes, MOEJIT_DTYPE_F32);
    if (nd < 0) return -1;

    moejit_route_spec base;
    memset(&base, 0, sizeof base);
    long v;
    if (o->groups) {
        if (cli_parse_int("--groups", o->groups, 0, 1 << 20, &v)) return -1;
        base.num_groups = (int)v;
    }
    if (o->topk_groups) {
        if (cli_parse_int("--topk-groups", o->topk_groups, 0, 1 << 20, &v)) return -1;
        base.topk_groups = (int)v;
    }
    if (o->group_score) {
        int g;
        if (parse_enum("--group-score", o->group_score, &g, mj_group_score_parse, "max, top2_sum")) return -1;
        base.group_score = (moejit_group_score)g;
    }
    if (o->shared_slots) {
        if (cli_parse_int("--shared-slots", o->shared_slots, 0, 1 << 20, &v)) return -1;
        base.shared_slots = (int)v;
    }
    if (o->softcap && parse_float("--softcap", o->softcap, &base.softcap)) return -1;
    if (o->scaling_factor && parse_float("--scaling-factor", o->scaling_factor, &base.routed_scaling_factor)) return -1;
    base.has_bias = o->bias;
    base.score_after_topk = o->score_after_topk;
    base.renormalize = o->renormalize;
    base.scale_output = o->scale_output;

    const int n = ne * nk * ns * nd;
    moejit_kernel_desc *descs = alloc_descs(n);
    if (!descs) return -1;
    int i = 0;
    for (int a = 0; a < ne; a++)
        for (int b = 0; b < nk; b++)
            for (int c = 0; c < ns; c++)
                for (int d = 0; d < nd; d++, i++) {
                    descs[i].op = MOEJIT_OP_ROUTE;
                    descs[i].route = base;
                    descs[i].route.num_experts = es[a];
                    descs[i].route.topk = ks[b];
                    descs[i].route.score = (moejit_score)scores[c];
                    descs[i].route.dtype = (moejit_dtype)dtypes[d];
                }
    *out = descs;
    return n;
}

/* A list of counts that the op cannot do without. Returns its length, or -1 (message printed). */
static int required_counts(const char *op, const char *flag, const char *text, int *items)
{
    if (!text) {
        fprintf(stderr, "moejit: %s is required with --op %s\n", flag, op);
        return -1;
    }
    return parse_list(flag, text, parse_count, items, 0);
}

/* permute and combine: --hidden × --dtype. */
static int build_rows(const spec_options *o, moejit_op op, moejit_kernel_desc **out)
{
    int hs[MAX_LIST], dtypes[MAX_LIST];
    int nh = required_counts(o->op, "--hidden", o->hidden, hs);
    int nd = nh < 0 ? -1 : parse_list("--dtype", o->dtype, parse_dtype_item, dtypes, MOEJIT_DTYPE_F32);
    if (nd < 0) return -1;
    moejit_kernel_desc *descs = alloc_descs(nh * nd);
    if (!descs) return -1;
    for (int a = 0, i = 0; a < nh; a++)
        for (int d = 0; d < nd; d++, i++) {
            descs[i].op = op;
            if (op == MOEJIT_OP_PERMUTE)
                descs[i].permute = (moejit_permute_spec){.hidden = hs[a], .dtype = (moejit_dtype)dtypes[d], .has_scale = o->row_scale};
            else descs[i].combine = (moejit_combine_spec){.hidden = hs[a], .dtype = (moejit_dtype)dtypes[d]};
        }
    *out = descs;
    return nh * nd;
}

/* align: --experts × --block-size. */
static int build_align(const spec_options *o, moejit_kernel_desc **out)
{
    int es[MAX_LIST], bs[MAX_LIST];
    const int ne = required_counts("align", "--experts", o->experts, es);
    const int nb = ne < 0 ? -1 : required_counts("align", "--block-size", o->block_size, bs);
    if (nb < 0) return -1;
    moejit_kernel_desc *descs = alloc_descs(ne * nb);
    if (!descs) return -1;
    for (int a = 0, i = 0; a < ne; a++)
        for (int b = 0; b < nb; b++, i++) {
            descs[i].op = MOEJIT_OP_ALIGN;
            descs[i].align = (moejit_align_spec){.num_experts = es[a], .block_size = bs[b]};
        }
    *out = descs;
    return ne * nb;
}

/* route_align: the route kernels of the route flags × --block-size. */
static int build_route_align(const spec_options *o, moejit_kernel_desc **out)
{
    int bs[MAX_LIST];
    const int nb = required_counts("route_align", "--block-size", o->block_size, bs);
    moejit_kernel_desc *routes = NULL;
    const int nr = nb < 0 ? -1 : build_route(o, &routes);
    if (nr < 0) return -1;
    moejit_kernel_desc *descs = alloc_descs(nr * nb);
    if (descs)
        for (int a = 0, i = 0; a < nr; a++)
            for (int b = 0; b < nb; b++, i++) {
                descs[i].op = MOEJIT_OP_ROUTE_ALIGN;
                descs[i].route_align = (moejit_route_align_spec){.route = routes[a].route, .block_size = bs[b]};
            }
    free(routes);
    if (!descs) return -1;
    *out = descs;
    return nr * nb;
}

/* mx_scales: --cols. */
static int build_mx_scales(const spec_options *o, moejit_kernel_desc **out)
{
    int cs[MAX_LIST];
    const int nc = required_counts("mx_scales", "--cols", o->cols, cs);
    if (nc < 0) return -1;
    moejit_kernel_desc *descs = alloc_descs(nc);
    if (!descs) return -1;
    for (int a = 0; a < nc; a++) {
        descs[a].op = MOEJIT_OP_MX_SCALES;
        descs[a].mx_scales.cols = cs[a];
    }
    *out = descs;
    return nc;
}

static const char *flag_name(int id)
{
    for (int i = 0; i < SPEC_OPTION_COUNT; i++)
        if (spec_long_options[i].val == id) return spec_long_options[i].name;
    return "?";
}

int spec_options_build(const spec_options *o, moejit_kernel_desc **out)
{
    *out = NULL;
    const char *op = o->op ? o->op : "route";
    size_t which = sizeof k_spec_ops / sizeof k_spec_ops[0];
    for (size_t i = 0; i < sizeof k_spec_ops / sizeof k_spec_ops[0]; i++)
        if (!strcmp(op, k_spec_ops[i].op)) which = i;
    if (which == sizeof k_spec_ops / sizeof k_spec_ops[0]) {
        fprintf(stderr, "moejit: --op = \"%s\" must be one of " SPEC_OP_NAMES "\n", op);
        return -1;
    }
    const unsigned applies = k_spec_ops[which].flags | FLAG(OPT_OP) | (k_spec_ops[which].takes_dtype ? FLAG(OPT_DTYPE) : 0);
    for (int id = OPT_OP; id <= OPT_LAST; id++)
        if (o->given & ~applies & FLAG(id)) {
            fprintf(stderr, "moejit: --%s does not apply to --op %s\n", flag_name(id), op);
            return -1;
        }
    switch (k_spec_ops[which].id) {
    case MOEJIT_OP_ROUTE: return build_route(o, out);
    case MOEJIT_OP_ALIGN: return build_align(o, out);
    case MOEJIT_OP_ROUTE_ALIGN: return build_route_align(o, out);
    case MOEJIT_OP_MX_SCALES: return build_mx_scales(o, out);
    default: return build_rows(o, k_spec_ops[which].id, out);
    }
}

void cli_report(const char *what, moejit_status st)
{
    fprintf(stderr, "moejit: %s: %s: %s\n", what, moejit_status_str(st), moejit_last_error(NULL));
}

moejit_status cli_open(const char *cache_dir, int jobs, moejit_ctx **ctx)
{
    moejit_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.cache_dir = cache_dir;
    cfg.compile_jobs = jobs;
    return moejit_open(&cfg, ctx);
}
