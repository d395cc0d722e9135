/* Which kernels a `source` or `prewarm` run is about: spec flags, --model presets (× --dtype)
 * and --manifest files, validated and without duplicates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"

enum { OPT_MODEL = 1500, OPT_MANIFEST, OPT_LIST_MODELS };

void select_options_table(struct option *opts)
{
    memcpy(opts, spec_long_options, sizeof spec_long_options);
    opts[SPEC_OPTION_COUNT] = (struct option){"model", required_argument, NULL, OPT_MODEL};
    opts[SPEC_OPTION_COUNT + 1] = (struct option){"manifest", required_argument, NULL, OPT_MANIFEST};
    opts[SPEC_OPTION_COUNT + 2] = (struct option){"list-models", no_argument, NULL, OPT_LIST_MODELS};
}

const char select_options_help[] =
    "kernel selection (manifests mix with presets or a family by hand; duplicates are built once):\n"
    "  --model NAME[,NAME…]   the route kernels of model presets (repeatable; see --list-models), for each\n"
    "                         --dtype (default " SELECT_MODEL_DTYPES "); with --op route_align and --block-size\n"
    "                         their route_align kernels, with --op route_backward their gradients' kernels,\n"
    "                         with --op route_losses (and --aux-stats) their losses' kernels (E and K).\n"
    "                         Route flags given refine every preset, as the\n"
    "                         fields of a manifest \"model\" entry do (--model qwen3-moe --shared-slots 1)\n"
    "  --manifest FILE.json   kernels listed in a JSON manifest (repeatable; - reads stdin; format in README)\n"
    "  --list-models          print the presets and exit\n"
    "  <kernel spec flags>    without --model: one kernel family by hand (below)\n";

/* Append p to a growing array of pointers. */
static int push_ptr(const char ***v, size_t *n, size_t *cap, const char *p)
{
    if (*n == *cap) {
        const size_t c = *cap ? 2 * *cap : 8;
        const char **nv = realloc(*v, c * sizeof *nv);
        if (!nv) {
            cli_error("out of memory");
            return -1;
        }
        *v = nv, *cap = c;
    }
    (*v)[(*n)++] = p;
    return 0;
}

/* One --model item: the library's own string of that preset. */
static int take_model(const char *flag, const char *item, void *user)
{
    select_options *o = user;
    for (size_t i = 0; moejit_route_preset_name(i); i++)
        if (!strcmp(item, moejit_route_preset_name(i)))
            return push_ptr(&o->models, &o->n_models, &o->cap_models, moejit_route_preset_name(i));
    cli_error("%s: \"%s\" is not a preset; `moejit prewarm --list-models` lists them", flag, item);
    return -1;
}

int select_options_take(select_options *o, int id, const char *arg)
{
    switch (id) {
    case OPT_MODEL: return cli_split_list("--model", arg, take_model, o) ? -1 : 1;
    case OPT_MANIFEST:
        return cli_nonempty("--manifest", arg) || push_ptr(&o->manifests, &o->n_manifests, &o->cap_manifests, arg) ? -1
                                                                                                                   : 1;
    case OPT_LIST_MODELS: o->list_models = 1; return 1;
    default: return spec_options_take(&o->spec, id, arg);
    }
}

void select_options_free(select_options *o)
{
    free(o->models);
    free(o->manifests);
    memset(o, 0, sizeof *o);
}

int kernel_list_add(kernel_list *l, const moejit_kernel_desc *desc, const char *origin, const char *error)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        kernel_item *v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v, l->cap = cap;
    }
    kernel_item *it = &l->v[l->n];
    memset(it, 0, sizeof *it);
    it->desc = *desc;
    it->origin = strdup(origin);
    it->invalid = error != NULL;
    it->error = error ? strdup(error) : NULL;
    if (!it->origin || (error && !it->error)) {
        free(it->origin), free(it->error);
        return -1;
    }
    l->n++;
    return 0;
}

void kernel_list_free(kernel_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i].origin), free(l->v[i].error);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- duplicates ------------------------------------------------------------------------------------ */

typedef struct keyed {
    mj_kernel_id id;
    size_t index;
} keyed;

static int by_id_then_index(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    const int c = memcmp(&x->id, &y->id, sizeof x->id);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Drop valid items whose normalised kernel an earlier item already builds (order is kept). */
static int drop_duplicates(kernel_list *l)
{
    keyed *k = calloc(l->n ? l->n : 1, sizeof *k);
    unsigned char *dup = calloc(l->n ? l->n : 1, 1);
    if (!k || !dup) {
        free(k), free(dup);
        return -1;
    }
    size_t m = 0;
    for (size_t i = 0; i < l->n; i++)
        if (!l->v[i].invalid && mj_kernel_id_from_desc(&l->v[i].desc, &k[m].id) == MOEJIT_OK) k[m++].index = i;
    qsort(k, m, sizeof *k, by_id_then_index);
    for (size_t i = 1; i < m; i++)
        if (!memcmp(&k[i].id, &k[i - 1].id, sizeof k[i].id)) dup[k[i].index] = 1;
    size_t out = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (dup[i]) {
            free(l->v[i].origin), free(l->v[i].error);
            l->duplicates++;
            continue;
        }
        l->v[out++] = l->v[i];
    }
    l->n = out;
    free(k), free(dup);
    return 0;
}

/* ---- building ---------------------------------------------------------------------------------------- */

static int oom(void)
{
    cli_error("out of memory");
    return CLI_FAILED;
}

/* Add the kernels the spec flags give (by hand, or refining `preset`); a typed spec that fails
 * validation is a usage error: nothing is built. */
static int add_spec_kernels(const select_options *o, const char *model, kernel_list *out)
{
    moejit_route_spec preset;
    if (model) moejit_route_preset(model, &preset); /* a known name: checked when the flag was taken */
    moejit_kernel_desc *descs;
    const int n = spec_options_build(&o->spec, model ? &preset : NULL, &descs);
    if (n < 0) return CLI_USAGE;
    int rc = CLI_OK;
    for (int i = 0; i < n && rc == CLI_OK; i++) {
        char *origin = NULL;
        const moejit_route_spec *r = descs[i].op == MOEJIT_OP_ROUTE_ALIGN      ? &descs[i].route_align.route
                                     : descs[i].op == MOEJIT_OP_ROUTE_BACKWARD ? &descs[i].route_backward.route
                                                                               : &descs[i].route;
        const int len = model && descs[i].op == MOEJIT_OP_ROUTE_LOSSES ? asprintf(&origin, "--model %s", model)
                        : model ? asprintf(&origin, "--model %s (%s)", model, mj_dtype_name((int)r->dtype))
                                : asprintf(&origin, "kernel spec flags");
        if (len < 0) {
            rc = oom();
            break;
        }
        const moejit_status st = moejit_validate(&descs[i]);
        if (st != MOEJIT_OK && (o->spec.have_any || !model)) {
            cli_report(origin, st);
            rc = CLI_USAGE;
        } else if (kernel_list_add(out, &descs[i], origin, NULL)) {
            rc = oom();
        }
        free(origin);
    }
    free(descs);
    return rc;
}

int select_build(const select_options *o, kernel_list *out)
{
    memset(out, 0, sizeof *out);
    if (!o->spec.have_any && !o->n_models && !o->n_manifests) {
        cli_error("no kernels selected: give --model NAME, --manifest FILE or a kernel spec (--experts E --topk K …)");
        return CLI_USAGE;
    }
    int rc = CLI_OK;
    if (o->n_models)
        for (size_t m = 0; m < o->n_models && rc == CLI_OK; m++) rc = add_spec_kernels(o, o->models[m], out);
    else if (o->spec.have_any)
        rc = add_spec_kernels(o, NULL, out);
    for (size_t f = 0; f < o->n_manifests && rc == CLI_OK; f++)
        if (manifest_load(o->manifests[f], out)) rc = CLI_USAGE;
    if (rc != CLI_OK) {
        kernel_list_free(out);
        return rc;
    }
    /* Validate what plain presets and manifests produced: a failure names the entry (and,
     * through the spec message, the field: manifest fields are the spec's field names). */
    for (size_t i = 0; i < out->n; i++) {
        kernel_item *it = &out->v[i];
        if (it->invalid) continue;
        const moejit_status st = moejit_validate(&it->desc);
        if (st == MOEJIT_OK) continue;
        char *msg;
        if (asprintf(&msg, "%s: %s: %s", it->origin, moejit_status_str(st), moejit_last_error(NULL)) < 0) return oom();
        it->invalid = 1;
        it->error = msg;
    }
    if (drop_duplicates(out)) return oom();
    return CLI_OK;
}

int select_finish(int argc, char **argv, const select_options *o, kernel_list *items)
{
    memset(items, 0, sizeof *items);
    if (optind < argc) {
        cli_error("unexpected argument \"%s\"", argv[optind]);
        return cli_usage_hint();
    }
    if (o->list_models) {
        print_models(stdout);
        return CLI_OK;
    }
    const int rc = select_build(o, items);
    return rc == CLI_OK ? -1 : rc;
}

/* ---- presets ----------------------------------------------------------------------------------------- */

void print_models(FILE *f)
{
    fprintf(f, "%-12s %-10s %s\n", "MODEL", "KERNEL", "ROUTING (logits dtype: --dtype, default " SELECT_MODEL_DTYPES ")");
    for (size_t i = 0; moejit_route_preset_name(i); i++) {
        const char *name = moejit_route_preset_name(i);
        moejit_kernel_desc d = {.op = MOEJIT_OP_ROUTE};
        moejit_route_preset(name, &d.route);
        mj_route_shape r;
        char shape[512] = "?";
        if (mj_route_normalize(&d.route, &r) == MOEJIT_OK) mj_route_describe(&r, shape, sizeof shape);
        /* the dtype is chosen per run: leave it out of the description */
        char *dt = strstr(shape, " dtype=");
        if (dt) memmove(dt, dt + strlen(" dtype=bf16"), strlen(dt + strlen(" dtype=bf16")) + 1);
        if (moejit_validate(&d) == MOEJIT_OK) fprintf(f, "%-12s %-10s %s\n", name, "route", shape);
        else fprintf(f, "%-12s %-10s %s  [not supported by this build: %s]\n", name, "route", shape, moejit_last_error(NULL));
    }
}
