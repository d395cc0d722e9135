/* JSON manifests (libjansson): a list of kernel entries for `prewarm` and `source`.
 *
 *   {"kernels": [ENTRY, …]}     or just     [ENTRY, …]
 *   ENTRY: {"op": "route", <fields of moejit_route_spec>}
 *        | {"op": "route_align", <fields of moejit_route_spec>, "block_size": B}
 *        | {"op": "route_backward", <fields of moejit_route_spec>}
 *        | {"op": "align", …} | {"op": "mx_scales", …} | {"op": "dispatch_layout", …}
 *        | {"op": "permute", …} | {"op": "combine", …}
 *        | {"op": "permute_backward", …} | {"op": "combine_backward", …}
 *        | {"op": "route_losses", "num_experts": E, "topk": K, "aux_stats": "lb,seq,z", …}
 *        | {"model": "kimi-k2", ["op": "route", "route_align" or "route_backward"], ["dtype": …],
 *           [route fields overriding the preset]}
 *        | {"model": "kimi-k2", "op": "route_losses", "aux_stats": …} (the preset's E and K)
 *
 * "dtype" may be a list (["bf16", "f32"]): one kernel per element. A "model" entry without one
 * takes SELECT_MODEL_DTYPES. Each op's fields are read by its own parser (manifest_<op>.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "manifest.h"
#include "api/ops.h"
#include "common/dtype.h"
#include "jit/codegen.h"
#include "ops/route/route.h"

/* Where a "model" entry's preset goes (NULL: the op takes no model). */
static moejit_route_spec *route_of(moejit_kernel_desc *d) { return &d->route; }
static moejit_route_spec *route_align_route_of(moejit_kernel_desc *d) { return &d->route_align.route; }
static moejit_route_spec *route_backward_route_of(moejit_kernel_desc *d) { return &d->route_backward.route; }

static const struct {
    const char *op;
    int (*parse)(mf_entry *e, moejit_kernel_desc *d);
    moejit_route_spec *(*preset_into)(moejit_kernel_desc *d);
} k_ops[] = {
    {"route", manifest_route, route_of},
    {"route_align", manifest_route_align, route_align_route_of},
    {"route_backward", manifest_route_backward, route_backward_route_of},
    {"align", manifest_align, NULL},
    {"mx_scales", manifest_mx_scales, NULL},
    {"dispatch_layout", manifest_dispatch_layout, NULL},
    {"permute", manifest_permute, NULL},
    {"combine", manifest_combine, NULL},
    {"permute_backward", manifest_permute_backward, NULL},
    {"combine_backward", manifest_combine_backward, NULL},
    {"capacity", manifest_capacity, NULL},
    {"route_losses", manifest_route_losses, NULL},
};

/* An op whose spec is no route spec but takes a "model" entry's E and K (NULL: none). */
typedef void (*preset_fn)(const moejit_route_spec *preset, moejit_kernel_desc *d);
static preset_fn from_preset(const char *op) { return !strcmp(op, "route_losses") ? manifest_route_losses_preset : NULL; }

#define OP_NAMES                                                                                           \
    "route, route_align, route_backward, align, mx_scales, dispatch_layout, permute, combine, permute_backward, "    \
    "combine_backward, capacity, route_losses"

/* ---- field readers -------------------------------------------------------------------------------- */

/* A short rendering of a JSON value for messages: the type and, when short, the value. */
static void describe_value(const json_t *v, char *buf, size_t cap)
{
    static const char *const types[] = {"an object", "an array", "a string", "an integer", "a real", "true", "false", "null"};
    const int t = (int)json_typeof(v);
    const char *type = t >= 0 && t < 8 ? types[t] : "a value";
    if (json_is_true(v) || json_is_false(v) || json_is_null(v)) {
        snprintf(buf, cap, "%s", type);
        return;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!text) {
        snprintf(buf, cap, "%s", type);
        return;
    }
    if (strlen(text) > 48) snprintf(buf, cap, "%s %.40s…", type, text);
    else snprintf(buf, cap, "%s %s", type, text);
    free(text);
}

static json_t *field(mf_entry *e, const char *name)
{
    if (e->n_read < (int)(sizeof e->read / sizeof e->read[0])) e->read[e->n_read++] = name;
    return json_object_get(e->obj, name);
}

static int bad(mf_entry *e, const char *name, const json_t *v, const char *expected)
{
    char got[96];
    describe_value(v, got, sizeof got);
    snprintf(e->error, sizeof e->error, "field \"%s\": expected %s, got %s", name, expected, got);
    return -1;
}

int mf_int(mf_entry *e, const char *name, int32_t *out)
{
    json_t *v = field(e, name);
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)
        return bad(e, name, v, "an integer in int32 range");
    *out = (int32_t)json_integer_value(v);
    return 0;
}

int mf_flag(mf_entry *e, const char *name, int32_t *out)
{
    json_t *v = field(e, name);
    if (!v) return 0;
    if (json_is_boolean(v)) *out = json_is_true(v);
    else if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        *out = (int32_t)json_integer_value(v);
    else return bad(e, name, v, "true, false, 0 or 1");
    return 0;
}

int mf_float(mf_entry *e, const char *name, int zero_ok, float *out)
{
    json_t *v = field(e, name);
    if (!v) return 0;
    const char *why = json_is_number(v) ? cli_float_problem(json_number_value(v), zero_ok) : "";
    if (why) {
        bad(e, name, v, zero_ok ? "0 or a finite positive normal float" : "a finite positive normal float");
        if (*why) {
            const size_t n = strlen(e->error);
            snprintf(e->error + n, sizeof e->error - n, " (%s)", why);
        }
        return -1;
    }
    *out = (float)json_number_value(v);
    return 0;
}

static int mf_enum(mf_entry *e, const char *name, int *out, int (*parse)(const char *), const char *choices)
{
    json_t *v = field(e, name);
    if (!v) return 0;
    const int x = json_is_string(v) ? parse(json_string_value(v)) : -1;
    if (x < 0) return bad(e, name, v, choices);
    *out = x;
    return 0;
}

int mf_score(mf_entry *e, const char *name, moejit_score *out)
{
    int x = (int)*out;
    if (mf_enum(e, name, &x, mj_score_parse, "one of \"softmax\", \"sigmoid\", \"sqrt_softplus\"")) return -1;
    *out = (moejit_score)x;
    return 0;
}

int mf_group_score(mf_entry *e, const char *name, moejit_group_score *out)
{
    int x = (int)*out;
    if (mf_enum(e, name, &x, mj_group_score_parse, "one of \"max\", \"top2_sum\"")) return -1;
    *out = (moejit_group_score)x;
    return 0;
}

int mf_drop_policy(mf_entry *e, const char *name, moejit_drop_policy *out)
{
    int x = (int)*out;
    if (mf_enum(e, name, &x, mj_drop_policy_parse, "one of \"probs\", \"position\"")) return -1;
    *out = (moejit_drop_policy)x;
    return 0;
}

int mf_index_dtype(mf_entry *e, const char *name, moejit_index_dtype *out)
{
    int x = (int)*out;
    if (mf_enum(e, name, &x, mj_index_dtype_parse, "one of \"int32\", \"int64\", \"int16\"")) return -1;
    *out = (moejit_index_dtype)x;
    return 0;
}

int mf_load_counter(mf_entry *e, const char *name, moejit_load_counter *out)
{
    int x = (int)*out;
    if (mf_enum(e, name, &x, mj_load_counter_parse, "one of \"none\", \"int32\", \"int64\"")) return -1;
    *out = (moejit_load_counter)x;
    return 0;
}

int mf_replay(mf_entry *e, const char *name, moejit_replay *out)
{
    int x = (int)*out;
    if (mf_enum(e, name, &x, mj_replay_parse, "one of \"off\", \"record\", \"given\"")) return -1;
    *out = (moejit_replay)x;
    return 0;
}

static int take_aux_name(const char *name, uint32_t *flags)
{
    const int f = mj_aux_stats_parse(name);
    if (f <= 0 || strchr(name, ',')) return -1; /* one name: a list element */
    *flags |= (uint32_t)f;
    return 0;
}

int mf_aux_stats(mf_entry *e, const char *name, uint32_t *out)
{
    static const char expected[] = "\"lb\", \"seq\", \"z\" joined by commas (\"lb,z\") or a list of them";
    json_t *v = field(e, name);
    if (!v) return 0;
    uint32_t flags = 0;
    if (json_is_string(v)) {
        const int f = mj_aux_stats_parse(json_string_value(v));
        const char *t = json_string_value(v);
        const size_t n = strlen(t);
        if (f <= 0 || t[n - 1] == ',') return bad(e, name, v, expected);
        flags = (uint32_t)f;
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *item = json_array_get(v, i);
            if (!json_is_string(item) || take_aux_name(json_string_value(item), &flags)) return bad(e, name, v, expected);
        }
    } else {
        return bad(e, name, v, expected);
    }
    *out = flags;
    return 0;
}

static int parse_seq_offset_dtype(const char *s)
{
    const int v = mj_index_dtype_parse(s);
    return v == MOEJIT_INDEX_INT16 ? -1 : v;
}

int mf_seq_offset_dtype(mf_entry *e, const char *name, moejit_index_dtype *out)
{
    int x = (int)*out;
    if (mf_enum(e, name, &x, parse_seq_offset_dtype, "one of \"int32\", \"int64\"")) return -1;
    *out = (moejit_index_dtype)x;
    return 0;
}

#define DTYPE_CHOICES "one of \"f32\", \"bf16\", \"f16\" (or a list of them)"

int mf_dtype(mf_entry *e, const char *name, moejit_dtype *out)
{
    if (e->dtype >= 0) { /* this pass's element of a list */
        field(e, name);
        *out = (moejit_dtype)e->dtype;
        return 0;
    }
    int x = (int)*out;
    if (mf_enum(e, name, &x, mj_dtype_parse, DTYPE_CHOICES)) return -1;
    *out = (moejit_dtype)x;
    return 0;
}

/* ---- entries -------------------------------------------------------------------------------------- */

static int add_error(kernel_list *l, const char *where, const char *op, const char *what)
{
    char *msg;
    if ((op ? asprintf(&msg, "%s (%s): %s", where, op, what) : asprintf(&msg, "%s: %s", where, what)) < 0) return -1;
    moejit_kernel_desc none;
    memset(&none, 0, sizeof none);
    const int rc = kernel_list_add(l, &none, where, msg);
    free(msg);
    return rc;
}

/* The dtypes of an entry: a list gives one pass per element; a single value or none gives one
 * pass reading the field normally (dtypes[0] = -1), except that a model takes its default list. */
static int entry_dtypes(mf_entry *e, int is_model, int *dtypes, int cap, char *err, size_t err_cap)
{
    json_t *v = json_object_get(e->obj, "dtype");
    if (!v && is_model) return cli_parse_dtypes("model default", SELECT_MODEL_DTYPES, dtypes, cap);
    if (!v || !json_is_array(v)) {
        dtypes[0] = -1;
        return 1;
    }
    const size_t n = json_array_size(v);
    if (n == 0 || n > (size_t)cap) {
        snprintf(err, err_cap, "field \"dtype\": a list needs 1 to %d elements, got %zu", cap, n);
        return -1;
    }
    for (size_t j = 0; j < n; j++) {
        json_t *item = json_array_get(v, j);
        dtypes[j] = json_is_string(item) ? mj_dtype_parse(json_string_value(item)) : -1;
        if (dtypes[j] < 0) {
            char got[96];
            describe_value(item, got, sizeof got);
            snprintf(err, err_cap, "field \"dtype\"[%zu]: expected one of \"f32\", \"bf16\", \"f16\", got %s", j, got);
            return -1;
        }
    }
    return (int)n;
}

static int unknown_fields(mf_entry *e)
{
    const char *key;
    json_t *v;
    json_object_foreach(e->obj, key, v)
    {
        int known = 0;
        for (int i = 0; i < e->n_read && !known; i++) known = !strcmp(key, e->read[i]);
        if (known) continue;
        int n = snprintf(e->error, sizeof e->error, "unknown field \"%.64s%s\" (%s fields:", key,
                         strlen(key) > 64 ? "…" : "", e->op);
        for (int i = 2; i < e->n_read && n > 0 && (size_t)n < sizeof e->error; i++) /* after "op", "model" */
            n += snprintf(e->error + n, sizeof e->error - (size_t)n, "%s %s", i > 2 ? "," : "", e->read[i]);
        if (n > 0 && (size_t)n < sizeof e->error) snprintf(e->error + n, sizeof e->error - (size_t)n, ")");
        return -1;
    }
    return 0;
}

static int load_entry(json_t *obj, const char *where, kernel_list *l)
{
    if (!json_is_object(obj)) {
        char got[96], msg[160];
        describe_value(obj, got, sizeof got);
        snprintf(msg, sizeof msg, "an entry must be an object, got %s", got);
        return add_error(l, where, NULL, msg);
    }
    mf_entry e;
    memset(&e, 0, sizeof e);
    e.obj = obj;
    e.where = where;
    json_t *model = json_object_get(obj, "model"), *op = json_object_get(obj, "op");
    if (model && !json_is_string(model)) {
        bad(&e, "model", model, "a preset name (moejit prewarm --list-models)");
        return add_error(l, where, NULL, e.error);
    }
    if (op && !json_is_string(op)) {
        bad(&e, "op", op, "one of " OP_NAMES);
        return add_error(l, where, NULL, e.error);
    }
    e.op = op ? json_string_value(op) : model ? "route" : NULL;
    if (!e.op) return add_error(l, where, NULL, "field \"op\" (one of " OP_NAMES ") or \"model\" is required");
    size_t which = sizeof k_ops / sizeof k_ops[0];
    for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
        if (!strcmp(e.op, k_ops[i].op)) which = i;
    if (which == sizeof k_ops / sizeof k_ops[0]) {
        bad(&e, "op", op, "one of " OP_NAMES);
        return add_error(l, where, NULL, e.error);
    }
    if (model && !k_ops[which].preset_into && !from_preset(e.op))
        return add_error(l, where, e.op,
                         "field \"model\": presets are routings; use \"op\": \"route\" (the default), \"route_align\", "
                         "\"route_backward\" or \"route_losses\"");

    int dtypes[8];
    char err[256];
    /* an op without a dtype (route_losses) takes a model's kernel once */
    const int nd = entry_dtypes(&e, model != NULL && k_ops[which].preset_into, dtypes, 8, err, sizeof err);
    if (nd < 0) return add_error(l, where, e.op, err);
    for (int j = 0; j < nd; j++) {
        moejit_kernel_desc d;
        memset(&d, 0, sizeof d);
        e.n_read = 0;
        e.dtype = dtypes[j];
        field(&e, "op");
        field(&e, "model");
        moejit_route_spec scratch;
        moejit_route_spec *preset = !model ? NULL : k_ops[which].preset_into ? k_ops[which].preset_into(&d) : &scratch;
        if (preset && moejit_route_preset(json_string_value(model), preset) != MOEJIT_OK) {
            snprintf(err, sizeof err, "field \"model\": \"%s\" is not a preset (moejit prewarm --list-models)",
                     json_string_value(model));
            return add_error(l, where, e.op, err);
        }
        if (preset && from_preset(e.op)) from_preset(e.op)(preset, &d);
        if (k_ops[which].parse(&e, &d) || unknown_fields(&e)) return add_error(l, where, e.op, e.error);
        char *origin;
        int n = preset && from_preset(e.op) ? asprintf(&origin, "%s (model %s)", where, json_string_value(model))
                : preset ? asprintf(&origin, "%s (model %s, %s)", where, json_string_value(model), mj_dtype_name(preset->dtype))
                : dtypes[j] >= 0 ? asprintf(&origin, "%s (%s)", where, mj_dtype_name(dtypes[j]))
                                 : asprintf(&origin, "%s", where);
        if (n < 0) return -1;
        n = kernel_list_add(l, &d, origin, NULL);
        free(origin);
        if (n) return -1;
    }
    return 0;
}

/* The kernels of a parsed manifest (consumes root). */
static int load_root(json_t *root, const char *path, kernel_list *l)
{
    json_t *list = root;
    const char *prefix = "";
    if (json_is_object(root)) {
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v)
        {
            if (strcmp(key, "kernels")) {
                cli_error("--manifest: %s: unknown top-level field \"%s\" (expected {\"kernels\": [...]})", path, key);
                json_decref(root);
                return -1;
            }
        }
        list = json_object_get(root, "kernels");
        prefix = "kernels";
    }
    if (!list || !json_is_array(list)) {
        cli_error("--manifest: %s: expected {\"kernels\": [...]} or a list of kernel entries", path);
        json_decref(root);
        return -1;
    }
    if (json_array_size(list) == 0) { /* a generated manifest that lost its entries must not pass */
        cli_error("--manifest: %s: the kernel list is empty", path);
        json_decref(root);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < json_array_size(list) && rc == 0; i++) {
        char *where;
        if (asprintf(&where, "%s: %s[%zu]", path, prefix, i) < 0) {
            rc = -1;
            break;
        }
        rc = load_entry(json_array_get(list, i), where, l);
        free(where);
    }
    json_decref(root);
    if (rc) cli_error("--manifest: %s: out of memory", path);
    return rc;
}

static int not_json(const char *path, const json_error_t *jerr)
{
    if (jerr->line > 0) cli_error("--manifest: %s:%d:%d: %s", path, jerr->line, jerr->column, jerr->text);
    else cli_error("--manifest: %s: %s", path, jerr->text);
    return -1;
}

int manifest_load(const char *path, kernel_list *l)
{
    struct stat st;
    if (strcmp(path, "-") && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* jansson would say "'[' expected" */
        cli_error("--manifest: %s is a directory, not a JSON file", path);
        return -1;
    }
    json_error_t jerr;
    json_t *root = !strcmp(path, "-") ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                                      : json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    return root ? load_root(root, path, l) : not_json(path, &jerr);
}

int manifest_load_text(const char *name, const char *text, size_t len, kernel_list *l)
{
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    return root ? load_root(root, name, l) : not_json(name, &jerr);
}
