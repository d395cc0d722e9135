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
    const char *block_size, *cols;
    int bias, score_after_topk, renormalize, scale_output, row_scale;
} spec_options;

/* getopt_long option table entries for the spec flags (ids >= 1000), NULL-terminated by caller. */
#define SPEC_OPTION_COUNT 19
extern const struct option spec_long_options[SPEC_OPTION_COUNT];

/* Handle one getopt result; returns 1 if it was a spec flag. */
int spec_options_take(spec_options *o, int id, const char *arg);

/* Build the descriptors. Prints an error naming the flag and value and returns -1 on bad input;
 * otherwise the count (and *out, malloc'ed). */
int spec_options_build(const spec_options *o, moejit_kernel_desc **out);

/* Parse a comma list of dtypes for `flag` into dtypes (at most cap). Returns the count or -1
 * after printing the reason. */
int cli_parse_dtypes(const char *flag, const char *text, int *dtypes, int cap);

/* Help text for the spec flags. */
extern const char spec_options_help[];

/* ---- kernel selection: spec flags, --model, --manifest (select.c) --------------------------------- */
typedef struct select_options {
    spec_options spec;
    char models[64][32];
    int n_models;
    const char *manifests[16];
    int n_manifests;
    int list_models;
} select_options;

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
 * after printing why (bad flag, unknown model, unreadable manifest, nothing selected). A spec
 * from the flags that fails validation is a usage error; model and manifest entries that fail
 * become invalid items and the others are still built. */
int select_build(const select_options *o, kernel_list *out);
void kernel_list_free(kernel_list *l);

/* The end of a `source` or `prewarm` command line (getopt done, next argument at optind): no
 * stray arguments, --list-models, then select_build. Returns -1 when *items holds the kernels to
 * work on; otherwise the exit status the command returns at once. */
int select_finish(const char *cmd, int argc, char **argv, const select_options *o, kernel_list *items);

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

/* Print "moejit: <what>: <status>: <detail>" to stderr. */
void cli_report(const char *what, moejit_status st);

/* Strict integer parse; prints an error naming `flag` and returns -1 on failure. */
int cli_parse_int(const char *flag, const char *text, long min, long max, long *out);

/* Open a context with an optional cache directory override. */
moejit_status cli_open(const char *cache_dir, int jobs, moejit_ctx **ctx);

#endif
