/* moejit source: print (or write to files) the generated CUDA C++ of kernels. Compiles nothing,
 * needs no GPU. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cache/store.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: moejit source [--out DIR] (--model NAME… | --manifest FILE… | <kernel spec>)\n"
            "Print the CUDA C++ moejit generates for a kernel: every size a compile-time constant, an\n"
            "extern \"C\" entry point named after the shape. Nothing is compiled. The output compiles as is:\n"
            "  moejit source --experts 384 --topk 8 --score sigmoid --dtype bf16 > k.cu\n"
            "  nvcc -cubin -arch=sm_90a k.cu && cuobjdump -sass k.cubin\n"
            "  moejit source --model kimi-k2 --out kernels/     # one .cu per kernel\n\n"
            "  --out DIR   write DIR/<kernel name>.cu for every selected kernel (created if missing);\n"
            "              without it the selection must be a single kernel, printed to stdout\n"
            "Exit status 0 on success, 1 if a kernel failed (the others are still written), 2 for bad usage.\n\n"
            "%s\n%s",
            select_options_help, spec_options_help);
}

/* Write one kernel's source to DIR/<name>.cu. */
static int write_one(const char *dir, const moejit_kernel_desc *d)
{
    char name[128], *src = NULL, *path = NULL;
    size_t len = 0;
    moejit_status st = moejit_kernel_name(d, name, sizeof name);
    if (st == MOEJIT_OK) st = moejit_source(NULL, d, &src, &len);
    if (st != MOEJIT_OK) {
        cli_report(name, st);
        return -1;
    }
    int rc = -1;
    if (asprintf(&path, "%s/%s.cu", dir, name) >= 0) {
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(src, 1, len, f) == len;
        if (f && fclose(f) != 0) ok = 0;
        if (ok) printf("wrote %s (%zu bytes)\n", path, len), rc = 0;
        else cli_error("cannot write %s: %s", path, strerror(errno));
    }
    free(path);
    moejit_free(src);
    return rc;
}

enum { OPT_OUT = 2100 };

int cmd_source(int argc, char **argv)
{
    struct option opts[SELECT_OPTION_COUNT + 3];
    select_options_table(opts);
    opts[SELECT_OPTION_COUNT] = (struct option){"out", required_argument, NULL, OPT_OUT};
    opts[SELECT_OPTION_COUNT + 1] = (struct option){"help", no_argument, NULL, 'h'};
    opts[SELECT_OPTION_COUNT + 2] = (struct option){0};
    select_options so;
    memset(&so, 0, sizeof so);
    const char *out_dir = NULL;
    int c, usage = 0;
    optind = 1;
    while (!usage && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            help(stdout);
            select_options_free(&so);
            return CLI_OK;
        }
        if (c == OPT_OUT) {
            usage = cli_nonempty("--out", optarg) != 0;
            out_dir = optarg;
            continue;
        }
        const int taken = select_options_take(&so, c, optarg);
        if (taken < 0) usage = 1;
        else if (!taken) usage = 2; /* getopt said why */
    }
    kernel_list items;
    int rc = usage ? CLI_USAGE : select_finish(argc, argv, &so, &items);
    select_options_free(&so);
    if (usage == 2) return cli_usage_hint();
    if (rc >= 0) return rc;
    rc = CLI_OK;
    size_t valid = 0, invalid = 0, first = 0;
    for (size_t i = 0; i < items.n; i++) {
        if (items.v[i].invalid) {
            cli_error("%s", items.v[i].error);
            invalid++;
        } else if (valid++ == 0) {
            first = i;
        }
    }
    if (!out_dir) {
        if (valid + invalid > 1) {
            cli_error("the selection describes %zu kernels; give --out DIR or single values", valid + invalid);
            rc = CLI_USAGE;
        } else if (valid == 1) {
            char *src = NULL;
            moejit_status st = moejit_source(NULL, &items.v[first].desc, &src, NULL);
            if (st != MOEJIT_OK) cli_report(NULL, st), rc = CLI_FAILED;
            else fputs(src, stdout);
            moejit_free(src);
        }
    } else if (mj_mkdir_p(out_dir, 0777) != 0) {
        cli_error("--out: \"%s\": cannot create it: %s", out_dir, strerror(errno));
        rc = CLI_FAILED;
    } else {
        size_t written = 0;
        for (size_t i = 0; i < items.n; i++)
            if (!items.v[i].invalid) written += write_one(out_dir, &items.v[i].desc) == 0;
        printf("source: wrote %zu file%s to %s", written, written == 1 ? "" : "s", out_dir);
        if (invalid) printf("; %zu entr%s failed", invalid, invalid == 1 ? "y" : "ies");
        if (items.duplicates) printf(" [%zu duplicate%s skipped]", items.duplicates, items.duplicates == 1 ? "" : "s");
        printf("\n");
        if (written < valid) rc = CLI_FAILED;
    }
    if (rc == CLI_OK && invalid) rc = CLI_FAILED;
    kernel_list_free(&items);
    return rc;
}
