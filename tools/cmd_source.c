/* moejit source: print the generated CUDA C++ of one kernel. Compiles nothing, needs no GPU. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void help(FILE *f)
{
    fprintf(f,
            "usage: moejit source <kernel spec>\n"
            "Print the CUDA C++ moejit generates for one kernel: every size a compile-time constant, an\n"
            "extern \"C\" entry point named after the shape. Nothing is compiled. The output compiles as is:\n"
            "  moejit source --experts 384 --topk 8 --score sigmoid --dtype bf16 > k.cu\n"
            "  nvcc -cubin -arch=sm_90a k.cu && cuobjdump -sass k.cubin\n\n%s",
            spec_options_help);
}

int cmd_source(int argc, char **argv)
{
    struct option opts[SPEC_OPTION_COUNT + 2];
    memcpy(opts, spec_long_options, sizeof spec_long_options);
    opts[SPEC_OPTION_COUNT] = (struct option){"help", no_argument, NULL, 'h'};
    opts[SPEC_OPTION_COUNT + 1] = (struct option){0};
    spec_options so = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'h') {
            help(stdout);
            return CLI_OK;
        }
        if (!spec_options_take(&so, c, optarg)) {
            help(stderr);
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moejit source: unexpected argument \"%s\"\n", argv[optind]);
        return CLI_USAGE;
    }
    moejit_kernel_desc *descs;
    int n = spec_options_build(&so, &descs);
    if (n < 0) return CLI_USAGE;
    if (n != 1) {
        fprintf(stderr, "moejit source: the spec describes %d kernels; give single values\n", n);
        free(descs);
        return CLI_USAGE;
    }
    char *src = NULL;
    moejit_status st = moejit_source(NULL, &descs[0], &src, NULL);
    free(descs);
    if (st != MOEJIT_OK) {
        cli_report("source", st);
        return st == MOEJIT_ERR_INVALID_SPEC || st == MOEJIT_ERR_UNSUPPORTED ? CLI_USAGE : CLI_FAILED;
    }
    fputs(src, stdout);
    moejit_free(src);
    return CLI_OK;
}
