/* Which kernels a `source` or `prewarm` run is about: spec flags, --model presets (× --dtype)
 * and --manifest files, validated and without duplicates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "spec.h"

enum { OPT_MODEL = 1500, OPT_MANIFEST, OPT_LIST_MODELS };

void select_options_table(struct option *opts)
{
    memcpy(opts, spec_long_options, sizeof spec_long_options);
    opts[SPEC_OPTION_COUNT] = (struct option){"model", required_argument, NULL, OPT_MODEL};
    opts[SPEC_OPTION_COUNT + 1] = (struct option){"manifest", required_argument, NULL, OPT_MANIFEST};
    opts[SPEC_OPTION_COUNT + 2] = (struct option){"list-models", no_argument, NULL, OPT_LIST_MODELS};
}

const char select_options_help[] =
    "kernel selection (any mix; duplicates are built once):\n"
    "  --model NAME[,NAME…]   the route kernels of model presets (repeatable; see --list-models), for each\n"
    "                         --dtype (default " SELECT_MODEL_DTYPES ")\n"
    "  --manifest FILE.json   kernels listed in a JSON manifest (repeatable; - reads stdin; format in README)\n"
    "  --list-models          print the presets and exit\n"
    "  <kernel spec flags>    one kernel family by hand (below)\n";

int select_options_take(select_options *o, int id, const char *arg)
{
    switch (id) {
    case OPT_MODEL: {
        if (strlen(arg) >= 1024) {
            fprintf(stderr, "moejit: --model = \"%.40s…\" is longer than 1023 characters\n", arg);
            return -1;
        }
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", arg);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            moejit_route_spec probe;
            if (moejit_route_preset(tok, &probe) != MOEJIT_OK) {
                fprintf(stderr, "moejit: --model = \"%s\" is not a preset; `moejit prewarm --list-models` lists them\n", tok);
                return -1;
            }
            if (o->n_models == (int)(sizeof o->models / sizeof o->models[0])) {
                fprintf(stderr, "moejit: at most %zu --model\n", sizeof o->models / sizeof o->models[0]);
                return -1;
            }
            snprintf(o->models[o->n_models++], sizeof o->models[0], "%s", tok); /* preset names are short */
        }
        return 1;
    }
    case OPT_MANIFEST:
        if (o->n_manifests == (int)(sizeof o->manifests / sizeof o->manifests[0])) {
            fprintf(stderr, "moejit: at most %zu --manifest\n", sizeof o->manifests / sizeof o->manifests[0]);
            return -1;
        }
        o->manifests[o->n_manifests++] = arg;
        return 1;
    case OPT_LIST_MODELS: o->list_models = 1; return 1;
    default: return spec_options_take(&o->spec, id, arg);
    }
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
    fprintf(stderr, "moejit: out of memory\n");
    return CLI_FAILED;
}

int select_build(const select_options *o, kernel_list *out)
{
    memset(out, 0, sizeof *out);
    if (!o->spec.have_any && !o->n_models && !o->n_manifests) {
        fprintf(stderr, "moejit: no kernels selected: give --model NAME, --manifest FILE or a kernel spec "
                        "(--experts E --topk K …)\n");
        return CLI_USAGE;
    }
    if (o->spec.have_any) {
        moejit_kernel_desc *descs;
        const int n = spec_options_build(&o->spec, &descs);
        if (n < 0) return CLI_USAGE;
        for (int i = 0; i < n; i++) {
            /* a bad spec typed on the command line is a usage error: nothing is built */
            if (moejit_validate(&descs[i]) != MOEJIT_OK) {
                cli_report("kernel spec", moejit_validate(&descs[i]));
                free(descs);
                kernel_list_free(out);
                return CLI_USAGE;
            }
            if (kernel_list_add(out, &descs[i], "kernel spec flags", NULL)) {
                free(descs);
                return oom();
            }
        }
        free(descs);
    }
    if (o->n_models) {
        int dtypes[8];
        const int nd = cli_parse_dtypes("--dtype", o->spec.dtype ? o->spec.dtype : SELECT_MODEL_DTYPES, dtypes, 8);
        if (nd < 0) {
            kernel_list_free(out);
            return CLI_USAGE;
        }
        for (int m = 0; m < o->n_models; m++)
            for (int d = 0; d < nd; d++) {
                moejit_kernel_desc desc = {.op = MOEJIT_OP_ROUTE};
                moejit_route_preset(o->models[m], &desc.route); /* checked when the flag was taken */
                desc.route.dtype = (moejit_dtype)dtypes[d];
                char origin[160];
                snprintf(origin, sizeof origin, "--model %s (%s)", o->models[m], mj_dtype_name(dtypes[d]));
                if (kernel_list_add(out, &desc, origin, NULL)) return oom();
            }
    }
    for (int f = 0; f < o->n_manifests; f++)
        if (manifest_load(o->manifests[f], out)) {
            kernel_list_free(out);
            return CLI_USAGE;
        }
    /* Validate what models and manifests produced: a failure names the entry (and, through the
     * spec message, the field: manifest fields are the spec's field names). */
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

int select_finish(const char *cmd, int argc, char **argv, const select_options *o, kernel_list *items)
{
    memset(items, 0, sizeof *items);
    if (optind < argc) {
        fprintf(stderr, "moejit %s: unexpected argument \"%s\"\n", cmd, argv[optind]);
        return CLI_USAGE;
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
        mj_kernel_id id;
        memset(&id, 0, sizeof id);
        id.op = MOEJIT_OP_ROUTE;
        char shape[512] = "?";
        if (mj_route_normalize(&d.route, &id.u.route) == MOEJIT_OK) mj_kernel_describe(&id, shape, sizeof shape);
        /* the dtype is chosen per run: leave it out of the description */
        char *dt = strstr(shape, " dtype=");
        if (dt) memmove(dt, dt + strlen(" dtype=bf16"), strlen(dt + strlen(" dtype=bf16")) + 1);
        if (moejit_validate(&d) == MOEJIT_OK) fprintf(f, "%-12s %-10s %s\n", name, "route", shape);
        else fprintf(f, "%-12s %-10s %s  [not supported by this build: %s]\n", name, "route", shape, moejit_last_error(NULL));
    }
}
