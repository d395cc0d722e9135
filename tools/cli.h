/* Shared pieces of the `moejit` command-line program. */
#ifndef MOEJIT_CLI_H
#define MOEJIT_CLI_H

#include <getopt.h>
#include <stddef.h>

#include "moejit.h"

/* Exit statuses: 0 success, 1 a requested operation failed, 2 bad usage. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

int cmd_source(int argc, char **argv);
int cmd_prewarm(int argc, char **argv);
int cmd_cache(int argc, char **argv);

/* Kernel-spec flags shared by `source` and `prewarm`. Numeric and enum flags accept comma lists
 * ("--experts 64,128 --dtype bf16,f32"); the descriptors are their cartesian product. */
typedef struct spec_options {
    int have_any;      /* at least one spec flag was given */
    const char *op;
    const char *experts, *topk, *score, *dtype;
    const char *groups, *topk_groups, *group_score;
    const char *softcap, *scaling_factor, *shared_slots;
    int bias, score_after_topk, renormalize, scale_output;
} spec_options;

/* getopt_long option table entries for the spec flags (ids >= 1000), NULL-terminated by caller. */
#define SPEC_OPTION_COUNT 15
extern const struct option spec_long_options[SPEC_OPTION_COUNT];

/* Handle one getopt result; returns 1 if it was a spec flag. */
int spec_options_take(spec_options *o, int id, const char *arg);

/* Build the descriptors. Prints an error naming the flag and value and returns -1 on bad input;
 * otherwise the count (and *out, malloc'ed). */
int spec_options_build(const spec_options *o, moejit_kernel_desc **out);

/* Help text for the spec flags. */
extern const char spec_options_help[];

/* Print "moejit: <what>: <status>: <detail>" to stderr. */
void cli_report(const char *what, moejit_status st);

/* Strict integer parse; prints an error naming `flag` and returns -1 on failure. */
int cli_parse_int(const char *flag, const char *text, long min, long max, long *out);

/* Open a context with an optional cache directory override. */
moejit_status cli_open(const char *cache_dir, int jobs, moejit_ctx **ctx);

#endif
