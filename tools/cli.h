/* Shared pieces of the `moejit` command-line program. */
#ifndef MOEJIT_CLI_H
#define MOEJIT_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "moejit.h"

/* Exit statuses: 0 success, 1 a requested operation failed, 2 bad usage. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

int cmd_source(int argc, char **argv);
int cmd_prewarm(int argc, char **argv);
int cmd_cache(int argc, char **argv);

/* ---- error lines (common.c) ----------------------------------------------------------------------
 * Every error line is "moejit <command>: <what>", and bad values are "<flag>: \"<value>\" <why>".
 * main() sets cli_command ("source", "prewarm", "cache"; NULL before one is chosen) and passes
 * "moejit <command>" as the command's argv[0], so getopt's own messages read the same. */
extern const char *cli_command;
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "try 'moejit <command> --help'" (after a usage error that getopt or cli_error printed); returns CLI_USAGE. */
int cli_usage_hint(void);
/* cli_error("[<what>: ]<status>: <moejit_last_error>"); what may be NULL. */
void cli_report(const char *what, moejit_status st);

/* ---- kernel-spec flags (common.c) ----------------------------------------------------------------
 * Numeric and enum flags accept comma lists ("--experts 64,128 --dtype bf16,f32"); the
 * descriptors are their cartesian product. */
typedef struct spec_options {
    int have_any;      /* a flag that describes a kernel was given (--dtype alone is not one) */
    unsigned given;    /* bit per flag given (spec flag ids - 1000) */
    const char *op;
    const char *experts, *topk, *score, *dtype;
    const char *groups, *topk_groups, *group_score;
    const char *softcap, *scaling_factor, *shared_slots;
    const char *hidden;
    const char *block_size, *cols, *id_dtype, *global_experts;
    const char *replicas, *physical_experts, *load_counter, *replay, *logical_id_dtype;
    const char *ranks, *ranks_per_node, *drop_policy;
    const char *aux_stats, *seq_offset_dtype;
    int bias, score_after_topk, renormalize, scale_output, row_scale, padded;
} spec_options;

/* getopt_long option table entries for the spec flags (ids >= 1000), NULL-terminated by caller. */
#define SPEC_OPTION_COUNT 32
extern const struct option spec_long_options[SPEC_OPTION_COUNT];

/* Handle one getopt result: 1 taken, 0 not a spec flag, -1 bad (a value flag given twice; message
 * printed). */
int spec_options_take(spec_options *o, int id, const char *arg);

/* Build the descriptors: by hand (preset NULL), or the kernels of a route preset refined by the
 * flags given (--op route or route_align only; a flag not given keeps the preset's value, as a
 * manifest field does). Prints an error naming the flag and value and returns -1 on bad input;
 * otherwise the count (and *out, malloc'ed). */
int spec_options_build(const spec_options *o, const moejit_route_spec *preset, moejit_kernel_desc **out);

/* Parse a comma list of dtypes for `flag` into dtypes (at most cap). Returns the count or -1
 * after printing the reason. */
int cli_parse_dtypes(const char *flag, const char *text, int *dtypes, int cap);

/* Call fn on each item of a comma list (of any length). An empty item ("bf16,,f32", "64,") or
 * an empty value is an error naming the flag and the value. Returns 0, or -1 once fn or the
 * check failed (message printed). */
int cli_split_list(const char *flag, const char *text, int (*fn)(const char *flag, const char *item, void *user),
                   void *user);

/* Help text for the spec flags. */
extern const char spec_options_help[];

/* ---- kernel selection: spec flags, --model, --manifest (select.c) --------------------------------- */
typedef struct select_options {
    spec_options spec;
    const char **models; /* preset names (the library's own strings), malloc'ed */
    size_t n_models, cap_models;
    const char **manifests; /* malloc'ed */
    size_t n_manifests, cap_manifests;
    int list_models;
} select_options;
void select_options_free(select_options *o);

/* getopt_long entries of the selection flags (spec flags, --model, --manifest, --list-models). */
#define SELECT_OPTION_COUNT (SPEC_OPTION_COUNT + 3)
void select_options_table(struct option *opts);

/* Handle one getopt result: 1 taken, 0 not a selection flag, -1 bad (message printed). */
int select_options_take(select_options *o, int id, const char *arg);

/* Default logits dtypes of --model and manifest "model" entries. */
#define SELECT_MODEL_DTYPES "bf16,f32"

/* One kernel to build, or an entry that could not become one (invalid, with its reason). */
typedef struct kernel_item {
    moejit_kernel_desc desc;
    char *origin;     /* where it came from: "--model kimi-k2 (bf16)", "shapes.json: kernels[3]" (malloc'ed) */
    int invalid;
    char *error;      /* malloc'ed reason when invalid */
} kernel_item;

typedef struct kernel_list {
    kernel_item *v;
    size_t n, cap;
    size_t duplicates; /* items dropped because an earlier one builds the same kernel */
} kernel_list;

/* Collect the selected kernels, validated and without duplicates. Returns CLI_OK, or CLI_USAGE
 * after printing why (bad flag, unknown model, unusable manifest, nothing selected). With
 * --model the spec flags refine each preset (--op route or route_align); without, they describe
 * one family by hand. A kernel from typed spec flags that fails validation is a usage error;
 * plain presets and manifest entries that fail become invalid items and the others are still
 * built. */
int select_build(const select_options *o, kernel_list *out);
void kernel_list_free(kernel_list *l);

/* The end of a `source` or `prewarm` command line (getopt done, next argument at optind): no
 * stray arguments, --list-models, then select_build. Returns -1 when *items holds the kernels to
 * work on; otherwise the exit status the command returns at once. */
int select_finish(int argc, char **argv, const select_options *o, kernel_list *items);

/* Append an item (invalid when error != NULL). Returns 0, or -1 out of memory. */
int kernel_list_add(kernel_list *l, const moejit_kernel_desc *desc, const char *origin, const char *error);

/* `--list-models`: one line per preset. */
void print_models(FILE *f);

extern const char select_options_help[];

/* ---- manifests (manifest.c) ---------------------------------------------------------------------- */

/* Parse a JSON manifest ("-" reads stdin) and append its kernels to l. Entry-level problems
 * become invalid items naming the entry and field; returns -1 (message printed) only when the
 * file itself cannot be used (unreadable, not JSON, wrong top level). */
int manifest_load(const char *path, kernel_list *l);
/* The same from memory (`name` is used in messages). */
int manifest_load_text(const char *name, const char *text, size_t len, kernel_list *l);

/* ---- helpers (common.c) ---------------------------------------------------------------------------- */

/* Strict integer parse; prints "<flag>: \"<text>\" is not an integer in min..max" and returns -1. */
int cli_parse_int(const char *flag, const char *text, long min, long max, long *out);

/* Why v is not a finite positive normal float (a scaling factor; a soft cap also takes 0 when
 * zero_ok): "it rounds to 0 as a float"…, or NULL when it is one. */
const char *cli_float_problem(double v, int zero_ok);

/* 0 for a non-empty value; else an error naming the flag, and -1. */
int cli_nonempty(const char *flag, const char *value);

/* Open a context with an optional cache directory override. */
moejit_status cli_open(const char *cache_dir, int jobs, moejit_ctx **ctx);

#endif
